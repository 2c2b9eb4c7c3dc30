"""Through the real controller (SimCluster: API emulator + moto + run_controller): a denied quota read ends
in a pool status that says the limit was learned from EC2 and which permission is missing."""

from __future__ import annotations

import pytest

from routectl.sim.cluster import SimCluster, network_condition

pytestmark = pytest.mark.slow


def test_pool_status_reports_a_limit_learned_from_ec2() -> None:
    sim = SimCluster(cloud="aws", nodes=6, route_limit=6, run_controller=False, resync_seconds=600).start()
    try:
        sim.aws.deny_quota = True  # servicequotas:GetServiceQuota denied; the table really holds 6 routes
        sim.start_controller()
        assert sim.wait_converged(120)
        routed = [n for n in sim.nodes() if (network_condition(n) or {}).get("status") == "False"]
        assert len(routed) == 4  # local + IGW + 4 nodes: nothing was refused on a guess
        status = sim.kube.get("routectl.io/v1alpha1", "PodCIDRPool", "default")["status"]
        [v4] = [t for t in status["routeTables"] if t["id"].endswith("/ipv4")]
        assert (v4["used"], v4["limit"], v4["limitSource"]) == (6, 6, "learned")
        assert "limit learned from EC2" in v4["note"] and "servicequotas:GetServiceQuota" in v4["note"]
        [v6] = [t for t in status["routeTables"] if t["id"].endswith("/ipv6")]
        assert v6["limitSource"] == "assumed" and "servicequotas:GetServiceQuota" in v6["note"]
        reached = {c["type"]: c for c in status["conditions"]}["RouteLimitReached"]
        assert reached["status"] == "True" and "learned from EC2" in reached["message"]
    finally:
        sim.stop()
