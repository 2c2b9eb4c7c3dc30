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
