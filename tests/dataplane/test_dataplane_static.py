"""Dataplane proof with hand-written router routes: the topology and the agent's rules on their own.

The cloud-parametrised test (test_dataplane_cloud.py) runs the same scenario with the routes routectl
programmed into the fake GCE and moto; this one pins the scenario itself, for both iptables backends.
"""

from __future__ import annotations

import copy

import pytest

from routectl.agent.sync import compute_desired
from routectl.constants import MASQ_CHAIN
from tests.dataplane import scenario, topology
from tests.dataplane.netns import NetnsFactory

pytestmark = [pytest.mark.dataplane, pytest.mark.slow]

ROUTES = {"10.244.0.0/24": "a", "10.244.1.0/24": "b"}


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_pod_traffic_nat_less_inside_masqueraded_outside(netns: NetnsFactory, backend: str):
    sc = scenario.build(netns, ROUTES, backend=backend)
    scenario.assert_nat_less_and_masqueraded(sc)
    # an unchanged resync writes nothing
    for name, syncer in sc.syncers.items():
        desired = compute_desired(scenario.node_object(name), [scenario.POOL])
        assert syncer.sync(desired).writes == 0
    scenario.assert_route_is_what_makes_it_work(
        sc, lambda: sc.topo.set_routes({k: v for k, v in ROUTES.items() if v != "b"}))
    scenario.assert_cleanup(sc)


def test_fresh_nodes_with_a_zero_non_masquerade_cidr_still_masquerade_egress(netns: NetnsFactory):
    """A 0.0.0.0/0 nonMasqueradeCIDR on freshly booted nodes (no last good rules, nothing installed):
    the entry is dropped and reported, the rest is installed, so internet egress is still masqueraded."""
    bad = copy.deepcopy(scenario.POOL)
    bad["spec"]["masquerade"]["nonMasqueradeCIDRs"] = [topology.VPC_CIDR, "0.0.0.0/0"]
    reports: list[str] = []
    sc = scenario.build(netns, ROUTES, pool=bad, reports=reports)
    assert len(reports) == 2 and all("0.0.0.0/0 is too wide" in r for r in reports), reports
    assert all("installed the rules without the rejected entries" in r for r in reports)
    for node in sc.topo.nodes.values():
        saved = node.ns.run("iptables-nft-save", "-t", "nat").stdout
        assert f"-j {MASQ_CHAIN}" in saved and "-j MASQUERADE" in saved and "0.0.0.0/0" not in saved
    scenario.assert_nat_less_and_masqueraded(sc)
    # the bad input stays: later syncs change nothing and the chain stays in place
    for name, syncer in sc.syncers.items():
        result = syncer.sync(compute_desired(scenario.node_object(name), [bad]))
        assert result.writes == 0 and result.families == (4,)
