"""Safety of the route reconciler that the controller relies on: the fence stops a running sync at its next
cloud mutation, and the cached table capacity counts our own creates (a full table is never overrun)."""

from __future__ import annotations

import threading
from typing import Any

from routectl.cloud.reconcile import RouteReconciler
from routectl.routes.model import NodeRoutes
from tests.cloud.harness import CLUSTER_CIDRS


def _nodes(cloud: Any, n: int) -> list[NodeRoutes]:
    return [cloud.add_node(f"node-{i}", (f"10.244.{i}.0/24",)) for i in range(1, n + 1)]


def test_a_sync_already_running_stops_mutating_once_fenced(cloud: Any) -> None:
    nodes = _nodes(cloud, 6)
    rec = RouteReconciler(cloud.driver(), CLUSTER_CIDRS, concurrency=1)
    lost = threading.Event()
    rec.set_fence(lost.is_set)
    real_create = rec.driver.create

    def create_then_lose_the_lease(*args: Any, **kw: Any) -> Any:
        out = real_create(*args, **kw)
        lost.set()  # the Lease is lost while this sync runs in its thread
        return out

    rec.driver.create = create_then_lose_the_lease  # type: ignore[method-assign]
    cloud.reset_log()
    res = rec.sync(nodes)
    assert cloud.create_attempts() == 1, "a fenced reconciler kept creating routes"
    assert sum(1 for s in res.nodes.values() if s.ok) <= 1
    cloud.reset_log()
    rec.remove("node-1", ("10.244.1.0/24",))
    assert cloud.mutating_calls() == 0, "a fenced reconciler deleted a route"


def test_cached_capacity_counts_creates_so_a_full_table_is_not_overrun(cloud: Any) -> None:
    nodes = _nodes(cloud, 5)
    cloud.set_limit(cloud.used() + 3)
    rec = cloud.reconciler()
    assert rec.sync(nodes[:1]).nodes["node-1"].ok  # one list: the cache now says 2 left
    for n in nodes[1:3]:
        assert rec.ensure([n]).nodes[n.name].ok
    cloud.reset_log()
    res = rec.ensure(nodes[3:4])  # from the cache, no list: the table is full by our own count
    assert res.nodes["node-4"].reason == "RouteLimitReached"
    assert cloud.create_attempts() == 0, "a create was attempted on a table our own creates filled"
