"""A full sync holds the reconciler's lock only in steps: event work is served while it runs, and the sync
never undoes what event work did meanwhile (a stale plan must not delete a route made for a new node)."""

from __future__ import annotations

import threading
from typing import Any

from routectl.routes.model import NodeRoutes
from tests.operator.conftest import wait_for

N = 40


def test_ensure_is_served_during_a_long_sync_and_the_sync_leaves_its_keys_alone(cloud: Any) -> None:
    rc = cloud.reconciler()
    nodes = [cloud.add_node(f"n{i:03d}", (f"10.244.{i}.0/24",)) for i in range(N)]
    first = rc.sync(nodes)
    assert not first.failed and len(cloud.routes_to()) == N
    # Every node is gone: the next sync deletes N routes (in that order), a few per hold of the lock.
    last = rc.plan([]).actions[-1].destination
    rc.sync_chunk = 1
    result: dict[str, Any] = {}
    syncing = threading.Thread(target=lambda: result.setdefault("sync", rc.sync([])))
    syncing.start()
    try:
        wait_for(lambda: len(cloud.routes_to()) <= N - 2, 60, interval=0.01)
        # Meanwhile the last block still routed is handed to a new node: its route is made on the event
        # path, before the sync reaches its own (now stale) delete of that destination.
        newcomer = cloud.add_node("newcomer", (last,))
        ensured = rc.ensure([newcomer])
        served_during_sync = syncing.is_alive()
    finally:
        syncing.join(120)
    assert served_during_sync, "ensure() waited for the whole sync"
    assert ensured.nodes["newcomer"].ok, ensured.nodes["newcomer"]
    routes = cloud.routes_to()
    assert routes == {last: {cloud.target_of(newcomer)}}, routes
    # the next sync agrees: nothing to do for the newcomer, every other route gone
    again = rc.sync([NodeRoutes(newcomer.name, newcomer.uid, newcomer.provider_id, (last,))])
    assert again.nodes["newcomer"].ok and not again.actions and not again.failed


def test_a_tracked_sync_leaves_alone_what_event_work_did_before_it_started(cloud: Any) -> None:
    # The controller calls track_events(), builds its node list, then sync(tracked=True): a node routed
    # by ensure() between the two (not in the list) keeps its route.
    rc = cloud.reconciler()
    rc.sync([])
    rc.track_events()
    newcomer = cloud.add_node("newcomer", ("10.244.7.0/24",))
    assert rc.ensure([newcomer]).nodes["newcomer"].ok
    result = rc.sync([], tracked=True)
    assert not [a for a in result.actions if a.kind == "delete"], result.actions
    assert cloud.routes_to() == {"10.244.7.0/24": {cloud.target_of(newcomer)}}
