"""routeLimitFallback: Overlay end to end: the real controller, the API emulator and both fake clouds.

Nodes whose route does not fit get the transport annotation, NetworkUnavailable=False/RouteOverlay naming
the table and its limit, and an Event; the pool counts routed and overlay nodes; freed room (a deleted
node, a raised quota) moves overlay nodes back to routes, and only then is their annotation removed.
"""

from __future__ import annotations

from typing import Any

import pytest

from routectl.constants import CONDITION_NETWORK_UNAVAILABLE, REASON_ROUTE_CREATED, TRANSPORT_ANNOTATION
from routectl.routes.fallback import EVENT_ROUTE_OVERLAY, EVENT_ROUTE_RESTORED, REASON_ROUTE_OVERLAY
from routectl.sim.cluster import SimCluster
from tests.operator.conftest import condition, node_events, wait_for

# 3 node routes fit: AWS counts the local and the IGW route in the same table
LIMITS = {"aws": 5, "gce": 3}


def _overlay(sim: SimCluster) -> list[str]:
    return sorted(n["metadata"]["name"] for n in sim.nodes()
                  if (n["metadata"].get("annotations") or {}).get(TRANSPORT_ANNOTATION) == "overlay")


def _pool_status(sim: SimCluster) -> dict[str, Any]:
    return sim.kube.get("routectl.io/v1alpha1", "PodCIDRPool", "default").get("status") or {}


@pytest.mark.parametrize("cloud", ["aws", "gce"])
def test_nodes_past_the_limit_ride_the_overlay_and_come_back(make_sim: Any, cloud: str) -> None:
    # no periodic resync during the test: freed room must be used at once (the room resync)
    sim = make_sim(cloud=cloud, nodes=5, route_limit=LIMITS[cloud], route_limit_fallback="Overlay",
                   resync_seconds=300.0)
    assert sim.wait_converged(60), sim.snapshot().to_dict()
    overlay = wait_for(lambda: _overlay(sim) if len(_overlay(sim)) == 2 else None, 30)
    routes = sim.cloud_routes()
    for n in sim.nodes():
        cond = condition(n, CONDITION_NETWORK_UNAVAILABLE)
        assert cond["status"] == "False", cond  # every node works
        name = n["metadata"]["name"]
        if name in overlay:
            assert cond["reason"] == REASON_ROUTE_OVERLAY
            assert "at its limit of" in cond["message"] and "UDP 8472" in cond["message"]
            assert n["spec"]["podCIDR"] not in routes
            assert any(e["reason"] == EVENT_ROUTE_OVERLAY for e in node_events(sim, name))
        else:
            assert cond["reason"] == REASON_ROUTE_CREATED and n["spec"]["podCIDR"] in routes
    status = wait_for(lambda: s if (s := _pool_status(sim)).get("overlayNodes") == 2 else None, 30)
    assert (status["routedNodes"], status["overlayNodes"], status["routesProgrammed"]) == (3, 2, 3)
    # the pool tells the truth: every node has a path (Ready), two ride the overlay until the quota rises
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True", conds["Ready"]
    over = conds["RoutesOverflowing"]
    assert (over["status"], over["reason"]) == ("True", "RouteLimitReached")
    assert "2 node(s)" in over["message"]
    assert not any("routeLimitFallback" in c["message"] for c in conds.values()), conds

    # room appears: a routed node goes; one overlay node gets its route, and only then loses the annotation
    routed = next(n for n in sim.node_names if n not in overlay)
    sim.delete_node(routed)
    moved = wait_for(lambda: [n for n in overlay if n not in _overlay(sim)], 30)
    assert len(moved) == 1 and len(_overlay(sim)) == 1
    node = sim.kube.get("v1", "Node", moved[0])
    assert node["spec"]["podCIDR"] in sim.cloud_routes()
    assert condition(node, CONDITION_NETWORK_UNAVAILABLE)["reason"] == REASON_ROUTE_CREATED
    assert any(e["reason"] == EVENT_ROUTE_RESTORED for e in node_events(sim, moved[0]))
    wait_for(lambda: (_pool_status(sim).get("routedNodes"), _pool_status(sim).get("overlayNodes")) == (3, 1),
             30)



def test_raised_quota_moves_overlay_nodes_back_at_the_next_resync(make_sim: Any) -> None:
    """While the quota is full it is re-read every quota_recheck_seconds (not the driver's long cache):
    raise it, and the periodic resync after that gives the overlay node its route, then drops the
    annotation."""
    sim = make_sim(cloud="gce", nodes=3, route_limit=2, route_limit_fallback="Overlay", resync_seconds=2.0,
                   quota_recheck_seconds=2.0)
    assert sim.wait_converged(60), sim.snapshot().to_dict()
    (on_overlay,) = wait_for(lambda: _overlay(sim) or None, 30)
    sim.gce.static_routes_quota += 1  # the per-network quota the sim enforces (routes_quota is None)
    wait_for(lambda: not _overlay(sim), 30)
    node = sim.kube.get("v1", "Node", on_overlay)
    assert node["spec"]["podCIDR"] in sim.cloud_routes()
    assert condition(node, CONDITION_NETWORK_UNAVAILABLE)["reason"] == REASON_ROUTE_CREATED
    wait_for(lambda: (_pool_status(sim).get("routedNodes"), _pool_status(sim).get("overlayNodes")) == (3, 0),
             30)
