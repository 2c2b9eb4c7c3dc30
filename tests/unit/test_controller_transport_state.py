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
