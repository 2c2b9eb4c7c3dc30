"""The simulation's progress digests follow every Node write, and only changed Nodes are digested again."""

from __future__ import annotations

from routectl.constants import CONDITION_NETWORK_UNAVAILABLE
from routectl.sim.cluster import SimCluster


def _by_name(sim: SimCluster) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in sim.node_digests()}


def test_digests_follow_writes_and_deletions_and_are_kept_for_unchanged_nodes() -> None:
    sim = SimCluster(cloud="gce", nodes=0, run_controller=False).start()
    try:
        a, b, c = sim.add_nodes(3)
        first = _by_name(sim)
        assert set(first) == {a, b, c} and "podCIDR" not in first[a]["spec"]
        assert first[a]["status"]["conditions"][0]["status"] == "True"  # the kubelet's NetworkUnavailable
        sim.kube.patch("v1", "Node", a, {"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}})
        cond = {"type": CONDITION_NETWORK_UNAVAILABLE, "status": "False", "reason": "RouteCreated",
                "message": "routectl created a route"}
        sim.kube.patch("v1", "Node", b, {"status": {"conditions": [cond]}}, subresource="status")
        sim.kube.delete("v1", "Node", c)
        second = _by_name(sim)
        assert set(second) == {a, b}
        assert second[a]["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
        assert second[b]["status"]["conditions"][0]["reason"] == "RouteCreated"
        assert second[b] is not first[b] and second[a] is not first[a]  # digested again: they changed
        assert _by_name(sim)[a] is second[a]  # unchanged since: the same digest, not built again
    finally:
        sim.stop()
