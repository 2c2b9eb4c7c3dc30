"""Behavioural suite run against BOTH clouds (real clients over HTTP: fake GCE server, moto server).

Every assertion about the cloud reads the server's state or its call log, never the driver's view.
"""

from __future__ import annotations

from typing import Any

import pytest

from routectl.cloud.base import NodeProblem
from routectl.cloud.reconcile import RouteReconciler
from routectl.routes.model import NodeRoutes
from tests.cloud.harness import CLUSTER_CIDRS


def _nodes(cloud: Any, n: int, start: int = 1) -> list[NodeRoutes]:
    return [cloud.add_node(f"node-{i}", (f"10.244.{i}.0/24",)) for i in range(start, start + n)]


def _expect(cloud: Any, nodes: list[NodeRoutes]) -> dict[str, set[str]]:
    return {n.pod_cidrs[0]: {cloud.target_of(n)} for n in nodes}


def test_sync_creates_routes_and_is_idempotent(cloud: Any) -> None:
    nodes = _nodes(cloud, 3)
    rec = cloud.reconciler()
    res = rec.sync(nodes)
    assert all(s.ok and s.reason == "RouteCreated" for s in res.nodes.values()), res.nodes
    assert cloud.routes_to() == _expect(cloud, nodes)
    assert res.routes_programmed == 3 * cloud.tables_per_route
    assert res.failed == [] and res.refused == []
    cloud.reset_log()
    again = cloud.reconciler().sync(nodes)  # a fresh controller (no cache) sees nothing to do
    assert cloud.mutating_calls() == 0
    assert again.actions == []
    assert all(s.ok for s in again.nodes.values())


def test_listing_marks_only_our_routes_owned(cloud: Any) -> None:
    foreign = cloud.add_foreign_routes()
    nodes = _nodes(cloud, 2)
    rec = cloud.reconciler()
    rec.sync(nodes)
    owned = [r for r in rec.driver.list_routes() if r.owned]
    assert sorted(r.destination for r in owned) == sorted(
        n.pod_cidrs[0] for n in nodes for _ in range(cloud.tables_per_route))
    assert len(foreign) >= 4


def test_replace_when_next_hop_changes(cloud: Any) -> None:
    nodes = _nodes(cloud, 2)
    rec = cloud.reconciler()
    rec.sync(nodes)
    moved = cloud.move_node(nodes[0], "node-1-replacement")
    res = rec.sync([moved, nodes[1]])
    assert res.nodes["node-1"].ok, res.nodes
    assert cloud.routes_to() == _expect(cloud, [moved, nodes[1]])
    assert {a.kind for a in res.actions} == {"replace"}


def test_stale_routes_deleted_and_remove_is_idempotent(cloud: Any) -> None:
    nodes = _nodes(cloud, 3)
    rec = cloud.reconciler()
    rec.sync(nodes)
    res = rec.sync(nodes[:2])  # node-3 is gone
    assert {a.kind for a in res.actions} == {"delete"}
    assert cloud.routes_to() == _expect(cloud, nodes[:2])
    gone = rec.remove("node-2")
    assert gone.nodes["node-2"].ok
    assert cloud.routes_to() == _expect(cloud, nodes[:1])
    again = rec.remove("node-2")
    assert again.nodes["node-2"].ok and again.actions == []


def test_driver_create_is_idempotent_and_replaces_other_next_hop(cloud: Any) -> None:
    """GCE 409 alreadyExists / AWS RouteAlreadyExists: same target is success, another target replaced."""
    a, b = _nodes(cloud, 2)
    drv = cloud.driver()
    ta, tb = drv.resolve(a), drv.resolve(b)
    for table in drv.list_tables():
        drv.create(table, "10.244.1.0/24", ta, a)
    cloud.reset_log()
    for table in drv.list_tables():
        drv.create(table, "10.244.1.0/24", ta, a)  # exists, same next hop
    assert cloud.routes_to() == {"10.244.1.0/24": {ta}}
    # only the refused create attempts, nothing else mutating
    assert cloud.mutating_calls() == cloud.create_attempts() == cloud.tables_per_route
    for table in drv.list_tables():
        drv.create(table, "10.244.1.0/24", tb, a)  # exists, other next hop -> replaced
    assert cloud.routes_to() == {"10.244.1.0/24": {tb}}


def test_foreign_routes_survive_every_operation(cloud: Any) -> None:
    foreign = cloud.add_foreign_routes()
    before = cloud.foreign_snapshot(foreign)
    assert all(v is not None for v in before.values())
    nodes = _nodes(cloud, 3)
    rec = cloud.reconciler()
    rec.plan(nodes)
    rec.sync(nodes)
    rec.sync([cloud.move_node(nodes[0], "elsewhere"), *nodes[1:]])
    rec.ensure(nodes[:1])
    # node-2 is gone; its block is named together with the foreign route's CIDR: only its route goes
    gone = rec.remove("node-2", ("10.244.2.0/24", "10.244.200.0/24"))
    assert gone.nodes["node-2"].ok, gone.nodes
    assert {a.destination for a in gone.actions} == {"10.244.2.0/24"}
    assert cloud.routes_to() == _expect(cloud, [nodes[0], nodes[2]])
    # node-3 is gone and its block went to node-4; then the controller restarts: the fresh reconciler
    # has no memory of node-3's next hop and must not delete node-4's route
    node4 = cloud.add_node("node-4", nodes[2].pod_cidrs)
    rec.sync([nodes[0], node4])
    fresh = cloud.reconciler()
    res = fresh.remove("node-3", nodes[2].pod_cidrs, uid=nodes[2].uid, provider_id=nodes[2].provider_id)
    assert res.nodes["node-3"].ok and res.actions == [], res
    assert cloud.routes_to() == _expect(cloud, [nodes[0], node4])
    fresh.sync([])  # every node gone: only our routes may go
    assert cloud.routes_to() == {}
    after = cloud.foreign_snapshot(foreign)
    assert {k: (v or {}).get("target", (v or {}).get("nextHopInstance")) for k, v in after.items()} == \
        {k: (v or {}).get("target", (v or {}).get("nextHopInstance")) for k, v in before.items()}
    assert all(v is not None for v in after.values())


def test_remove_after_restart_deletes_only_provable_routes(cloud: Any) -> None:
    """Without memory of a gone node's next hop: blackholes and (GCE) its own route name go, nothing else."""
    a, b = _nodes(cloud, 2)
    cloud.reconciler().sync([a, b])
    cloud.kill_instance(a)  # AWS: its routes turn into blackholes; GCE: they stay, named after its uid
    fresh = cloud.reconciler()
    res = fresh.remove("node-1", a.pod_cidrs, uid=a.uid, provider_id=a.provider_id)
    assert res.nodes["node-1"].ok and len(res.actions) == cloud.tables_per_route, res
    assert cloud.routes_to() == _expect(cloud, [b])
    # no uid, live instance, unknown next hop: nothing is provably node-2's -> left to sync, reported
    res = cloud.reconciler().remove("node-2", b.pod_cidrs)
    assert res.nodes["node-2"].ok and res.actions == []
    assert "left to the next sync" in res.nodes["node-2"].message
    assert cloud.routes_to() == _expect(cloud, [b])


def test_driver_refuses_to_touch_foreign_route(cloud: Any) -> None:
    cloud.add_foreign_routes()
    drv = cloud.driver()
    foreign = [r for r in drv.list_routes() if not r.owned]
    assert foreign
    from routectl.cloud.base import CloudError

    with pytest.raises(CloudError, match="not owned"):
        drv.delete(foreign[0])
    with pytest.raises(CloudError, match="not owned"):
        drv.replace(foreign[0], "whatever", NodeRoutes("n", "u", None, ()))


def test_provider_id_problems_are_per_node(cloud: Any) -> None:
    good = _nodes(cloud, 1)[0]
    bad = [
        NodeRoutes("no-pid", "u-x", None, ("10.244.50.0/24",)),
        NodeRoutes("garbage-pid", "u-y", "kind://whatever", ("10.244.51.0/24",)),
        NodeRoutes("gone", "u-z", cloud.missing_instance_pid(), ("10.244.52.0/24",)),
        NodeRoutes("no-cidr", "u-w", good.provider_id, ()),
        NodeRoutes("outside", "u-v", good.provider_id, ("192.168.1.0/24",)),
    ]
    res = cloud.reconciler().sync([good, *bad])
    assert res.nodes["node-1"].ok
    reasons = {k: v.reason for k, v in res.nodes.items() if not v.ok}
    assert reasons == {"no-pid": "InvalidProviderID", "garbage-pid": "InvalidProviderID",
                       "gone": "InstanceNotFound", "no-cidr": "NoPodCIDR",
                       "outside": "CIDROutsideClusterCIDRs"}
    assert all(res.nodes[n].message for n in reasons)
    assert cloud.routes_to() == _expect(cloud, [good])


def test_prerequisite_fixed_or_reported(cloud: Any) -> None:
    node = cloud.add_node("node-1", ("10.244.1.0/24",), prereq_ok=False)
    plan = cloud.reconciler().plan([node])  # plan is read-only: never fixes, only reports
    assert plan.nodes["node-1"].reason == "PrerequisiteFailed"
    assert cloud.mutating_calls() == 0 and not cloud.prerequisite_ok(node)
    res = cloud.reconciler().sync([node])
    if cloud.can_fix_prerequisite:  # AWS: source/dest check disabled on the primary ENI, then routed
        assert res.nodes["node-1"].ok, res.nodes
        assert cloud.prerequisite_ok(node)
    else:  # GCE: canIpForward cannot be changed on a running instance -> reported, no route
        assert res.nodes["node-1"].reason == "PrerequisiteFailed"
        assert "canIpForward" in res.nodes["node-1"].message
        assert cloud.routes_to() == {}


def test_full_table_reports_both_ways_out_without_blind_creates(cloud: Any) -> None:
    nodes = _nodes(cloud, 6)
    cloud.set_limit(cloud.used() + 4)  # room for 4 of 6
    cloud.reset_log()
    rec = cloud.reconciler()
    res = rec.sync(nodes)
    assert sum(s.ok for s in res.nodes.values()) == 4
    refused = [n for n, s in res.nodes.items() if s.reason == "RouteLimitReached"]
    assert refused == ["node-5", "node-6"]
    assert cloud.create_attempts() == 4 * cloud.tables_per_route  # nothing attempted past the limit
    reached = [w for w in res.warnings if w.kind == "reached"]
    assert len(reached) == cloud.tables_per_route
    for w in reached:
        assert w.refused == 2 and w.used == w.limit
        assert "ROUTES" in w.message or "L-93826ACB" in w.message  # way out 1: which quota
        assert "at least" in w.message
        assert "overlay" in w.message and "VXLAN" in w.message  # way out 2
    assert "overlay" in res.nodes["node-5"].message
    cloud.reset_log()
    res2 = rec.sync(nodes)
    assert cloud.create_attempts() == 0 and not res2.nodes["node-6"].ok


def test_nearing_limit_warns(cloud: Any) -> None:
    nodes = _nodes(cloud, 4)
    cloud.set_limit(cloud.used() + 5)  # ends one below the limit: >= 80 % on both clouds
    res = cloud.reconciler().sync(nodes)
    assert all(s.ok for s in res.nodes.values())
    kinds = {w.kind for w in res.warnings}
    assert kinds == {"nearing"}
    assert all("overlay" in w.message for w in res.warnings)


def test_throttling_and_5xx_still_converge(cloud: Any) -> None:
    """Every 4th mutating call throttled and every 5th request (20 %) a 5xx, half of those on mutating calls
    after the change was applied: all routes converge with zero failed creates. Count-based faults, so
    the outcome does not depend on how fast this machine is."""
    nodes = _nodes(cloud, 24)
    cloud.faults(throttle_every=4, error_every=5)
    res = cloud.reconciler().sync(nodes)
    throttled, injected = cloud.fault_counts()
    assert throttled > 0 and injected > 0 and cloud.applied_then_failed() > 0
    assert res.failed == [] and res.refused == []
    assert all(s.ok for s in res.nodes.values()), {k: v for k, v in res.nodes.items() if not v.ok}
    assert res.calls.throttled == throttled  # the client saw (and counted) every throttled answer
    cloud.faults()
    assert cloud.routes_to() == _expect(cloud, nodes)


def test_lost_answer_after_apply_is_success(cloud: Any) -> None:
    """The change is applied but its answer is lost (5xx): the retry meets our own route (GCE 409
    alreadyExists / AWS RouteAlreadyExists with the same target) and that is success."""
    node = _nodes(cloud, 1)[0]
    drv = cloud.driver()
    target = drv.resolve(node)
    cloud.faults(error_every=1)  # every request faulted, but never twice in a row for the same one
    for table in drv.list_tables():
        route = drv.create(table, "10.244.1.0/24", target, node)
        assert route.target == target
    assert cloud.applied_then_failed() >= 1
    assert cloud.create_attempts() == 2 * cloud.tables_per_route  # each create retried exactly once
    # every error the driver saw was injected, except one conflict answer per lost-after-apply create
    assert drv.calls.snapshot().errors == cloud.fault_counts()[1] + cloud.applied_then_failed()
    cloud.faults()
    assert cloud.routes_to() == {"10.244.1.0/24": {target}}


def test_steady_state_makes_no_mutating_calls(cloud: Any) -> None:
    nodes = _nodes(cloud, 8)
    rec = cloud.reconciler()
    rec.sync(nodes)
    cloud.reset_log()
    res = rec.sync(nodes)
    assert cloud.mutating_calls() == 0
    assert cloud.list_calls() == 1  # one page here
    assert res.actions == [] and res.routes_programmed == 8 * cloud.tables_per_route


def test_ensure_and_remove_use_the_cached_view(cloud: Any) -> None:
    nodes = _nodes(cloud, 3)
    rec = cloud.reconciler()
    rec.sync(nodes[:2])
    cloud.reset_log()
    res = rec.ensure(nodes[2:])
    assert res.nodes["node-3"].ok
    assert cloud.list_calls() == 0
    assert cloud.routes_to() == _expect(cloud, nodes)
    gone = rec.remove("node-1")
    assert gone.nodes["node-1"].ok and cloud.list_calls() == 0
    assert cloud.routes_to() == _expect(cloud, nodes[1:])


def test_dual_stack_routes(cloud: Any) -> None:
    node = cloud.add_node("node-1", ("10.244.1.0/24", "fd00:10:244:1::/64"))
    res = cloud.reconciler().sync([node])
    assert res.nodes["node-1"].ok, res.nodes
    assert set(cloud.routes_to()) == {"10.244.1.0/24", "fd00:10:244:1::/64"}


def test_resolve_raises_node_problem(cloud: Any) -> None:
    drv = cloud.driver()
    with pytest.raises(NodeProblem) as e:
        drv.resolve(NodeRoutes("x", "u", cloud.missing_instance_pid(), ()))
    assert e.value.reason == "InstanceNotFound"


def test_unresolvable_node_keeps_its_route(cloud: Any) -> None:
    """A node that still exists but cannot be resolved now (instance lookup fails) loses nothing."""
    nodes = _nodes(cloud, 2)
    rec = cloud.reconciler()
    rec.sync(nodes)
    broken = NodeRoutes(nodes[0].name, nodes[0].uid, cloud.missing_instance_pid(), nodes[0].pod_cidrs)
    res = cloud.reconciler().sync([broken, nodes[1]])
    assert res.nodes["node-1"].reason == "InstanceNotFound"
    assert res.actions == []
    assert cloud.routes_to() == _expect(cloud, nodes)


def test_quota_unreadable_attempts_and_learns_the_limit_from_the_cloud(cloud: Any) -> None:
    """The quota cannot be read (permission missing) and the table/network really holds 500 routes, 440 of
    them taken by others: all 60 nodes are routed (nothing refused on a guess), the 61st create is refused
    by the cloud, that count is remembered as the limit and the status says so and names the permission."""
    cloud.deny_quota(real_limit=500)
    cloud.fill(440 - cloud.used())
    nodes = _nodes(cloud, 61)
    rec = RouteReconciler(cloud.driver(concurrency=1), CLUSTER_CIDRS, concurrency=1)
    res = rec.sync(nodes[:60])
    assert all(s.ok for s in res.nodes.values()), {k: v for k, v in res.nodes.items() if not v.ok}
    assert cloud.routes_to() == _expect(cloud, nodes[:60])
    assert any(cloud.quota_permission in c.note and c.source == "assumed" for c in res.tables), res.tables
    cloud.reset_log()
    res = rec.sync(nodes)
    assert cloud.create_attempts() == cloud.tables_per_route  # one refused attempt per table, no more
    assert res.nodes["node-61"].reason == "RouteLimitReached"
    assert cloud.learned_text in res.nodes["node-61"].message, res.nodes["node-61"]
    caps = rec.driver.capacity(rec.driver.list_routes())
    learned = [c for c in caps if c.source == "learned"]
    assert len(learned) == cloud.tables_per_route and {c.limit for c in learned} == {500}
    assert all(cloud.learned_text in c.note and cloud.quota_permission in c.note for c in learned)
    assert all(c.status_entry()["limitSource"] == "learned" for c in learned)
    cloud.reset_log()
    again = rec.sync(nodes)  # the learned limit now refuses without asking the cloud
    assert cloud.create_attempts() == 0 and again.nodes["node-61"].reason == "RouteLimitReached"
    assert all(again.nodes[n.name].ok for n in nodes[:60])
def test_full_table_admits_the_oldest_nodes_first(cloud: Any) -> None:
    """Room for 4 of 6: the two youngest nodes are refused whatever their addresses, so nodes on the
    overlay move back to routes oldest first as room appears."""
    import dataclasses

    stamps = {1: "2026-12-01T10:00:05Z", 2: "2026-12-01T10:00:04Z", 3: "2026-12-01T10:00:00Z",
              4: "2026-12-01T10:00:01Z", 5: "2026-12-01T10:00:02Z", 6: "2026-12-01T10:00:03Z"}
    nodes = [dataclasses.replace(n, created=stamps[i]) for i, n in enumerate(_nodes(cloud, 6), start=1)]
    cloud.set_limit(cloud.used() + 4)
    rec = cloud.reconciler()
    res = rec.sync(nodes)
    assert sorted(n for n, s in res.nodes.items() if not s.ok) == ["node-1", "node-2"]
    cloud.set_limit(cloud.used() + 1)  # one more slot: the older of the two gets it
    res = cloud.reconciler().sync(nodes)  # a fresh driver: AWS caches the quota it read for an hour
    assert res.nodes["node-2"].ok and not res.nodes["node-1"].ok
