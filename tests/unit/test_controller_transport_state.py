"""Pure controller state for the overlay fallback: what a Node body says, what a pool status shows."""

from __future__ import annotations

from routectl.controller.state import NodeView, PoolFacts, pool_status


def test_node_view_reads_transport_and_age() -> None:
    body = {"metadata": {"name": "n", "uid": "u", "creationTimestamp": "2026-12-01T10:00:00Z",
                         "annotations": {"routectl.io/transport": "overlay"}}, "spec": {}}
    view = NodeView.from_body(body)
    assert view.transport == "overlay" and view.created == "2026-12-01T10:00:00Z"
    plain = NodeView.from_body({"metadata": {"name": "n"}, "spec": {}})
    assert plain.transport is None and plain.created == ""


def test_pool_status_counts_transports_only_when_the_pool_opts_in() -> None:
    today = pool_status(PoolFacts("p", 1, allocated=5, routes_programmed=3), None, "t")
    assert "routedNodes" not in today and "overlayNodes" not in today  # a None pool's status is unchanged
    facts = PoolFacts("p", 1, allocated=5, routes_programmed=3, transports=(3, 2))
    status = pool_status(facts, None, "t")
    assert (status["routedNodes"], status["overlayNodes"], status["routesProgrammed"]) == (3, 2, 3)


async def test_route_room_goes_by_age_only_when_a_pool_opts_in() -> None:
    """Node ages reach the route layer (oldest first) only with an Overlay pool: None keeps today's order."""
    import asyncio
    from types import SimpleNamespace
    from typing import Any

    from routectl.controller.routing import Routing
    from routectl.ipam.model import PoolSpec

    class Reconciler:
        def set_fence(self, fence: Any) -> None: ...
        def set_cluster_cidrs(self, cidrs: Any, warn: int) -> None: ...
        def set_node_masks(self, masks: Any) -> None: ...

    reporter: Any = SimpleNamespace(overlay_pools=set())
    routing = Routing(lambda cidrs, warn: Reconciler(), None, asyncio.Lock(), reporter, None,  # type: ignore[arg-type]
                      lambda: False)
    view = NodeView("n", "u", None, {}, ("10.244.1.0/24",), "1", False, None, created="2026-12-01T10:00:00Z")
    await routing.retarget([PoolSpec("p", ("10.244.0.0/16",))])
    assert routing.node_routes(view, view.pod_cidrs).created == "" and reporter.overlay_pools == set()
    await routing.retarget([PoolSpec("p", ("10.244.0.0/16",), route_limit_fallback="Overlay")])
    assert routing.node_routes(view, view.pod_cidrs).created == "2026-12-01T10:00:00Z"
    assert reporter.overlay_pools == {"p"}


def _conds(facts: PoolFacts) -> dict[str, dict]:
    from routectl.controller.state import pool_conditions
    return {c["type"]: c for c in pool_conditions(facts)}


def _reached() -> str:
    from routectl.cloud.limits import ways_out
    from routectl.routes.model import TableCapacity
    cap = TableCapacity("rtb-1", 50, 50, "Routes per route table", "Service Quotas L-93826ACB", "aws")
    return f"aws route table rtb-1: 50/50 routes used, 12 route(s) refused (not attempted). " \
           f"Ways out: {ways_out(cap, 62)}."


def test_an_overlay_pool_whose_nodes_all_have_a_path_is_ready_and_says_why_not_routed() -> None:
    holders = tuple(f"n{i}" for i in range(60))
    facts = PoolFacts("p", 1, allocated=60, capacity=256, holders=holders, routes_programmed=48,
                      reached=_reached(), nearing=_reached(), transports=(48, 12))
    conds = _conds(facts)
    ready = conds["Ready"]
    assert ready["status"] == "True" and "48 routed, 12 on the VXLAN overlay" in ready["message"]
    over = conds["RoutesOverflowing"]
    assert (over["status"], over["reason"]) == ("True", "RouteLimitReached")
    assert "12 node(s) ride the VXLAN overlay" in over["message"] and "raise" in over["message"]
    assert conds["RouteLimitReached"]["status"] == "True"  # the table is full: still true
    for c in conds.values():  # nowhere the advice to turn on the switch that is on
        assert "routeLimitFallback" not in c["message"] and "overlay network" not in c["message"], c


def test_an_overlay_pool_with_nodes_still_without_a_path_is_not_ready() -> None:
    facts = PoolFacts("p", 1, allocated=3, holders=("a", "b", "c"), reached=_reached(), transports=(2, 0))
    conds = _conds(facts)
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "RouteLimitReached")
    assert "routeLimitFallback" not in conds["Ready"]["message"]
    over = conds["RoutesOverflowing"]
    assert (over["status"], over["reason"]) == ("False", "AllRouted")


def test_a_pool_without_the_switch_keeps_todays_conditions_and_advice() -> None:
    conds = _conds(PoolFacts("p", 1, allocated=3, holders=("a", "b", "c"), reached=_reached()))
    assert "RoutesOverflowing" not in conds
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "RouteLimitReached")
    assert "routeLimitFallback: Overlay" in conds["Ready"]["message"]


def test_status_advice_for_an_overlay_pool_names_only_the_quota() -> None:
    from routectl.ops.report import pool_warning_entries
    cond = {"type": "RouteLimitReached", "status": "True", "message": "full"}
    pool = {"metadata": {"name": "p"}, "spec": {"routeLimitFallback": "Overlay"},
            "status": {"conditions": [cond]}}
    (entry,) = pool_warning_entries([pool], with_limits=True)
    assert entry["advice"] and not any("routeLimitFallback" in a or "overlay" in a for a in entry["advice"])
    plain = {**pool, "spec": {}}
    (entry,) = pool_warning_entries([plain], with_limits=True)
    assert any("routeLimitFallback: Overlay" in a for a in entry["advice"])


def test_table_warnings_drop_the_switch_only_when_every_pool_has_it_on() -> None:
    from routectl.ops.report import warnings
    from routectl.routes.model import LimitWarning
    w = LimitWarning("reached", "rtb-1", 50, 50, _reached(), 12, "aws")
    on = {"metadata": {"name": "p"}, "spec": {"routeLimitFallback": "Overlay"}, "status": {}}
    (entry,) = warnings([w], [], [on])
    text = entry["message"] + " ".join(entry["advice"])
    assert "routeLimitFallback" not in text and "raise" in text
    off = {"metadata": {"name": "q"}, "spec": {}, "status": {}}
    (entry,) = warnings([w], [], [on, off])  # pool q still needs the switch: the advice stays
    assert "routeLimitFallback: Overlay" in entry["message"] and len(entry["advice"]) == 2
