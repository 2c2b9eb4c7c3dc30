"""Dataplane proof with hand-written router routes: the topology, the agent's rules and its CNI config.

The cloud-parametrised test (test_dataplane_cloud.py) runs the same scenario with the routes routectl
programmed into the fake GCE and moto; this one pins the scenario itself, for both iptables backends,
and runs it dual-stack. Every pod is wired by the real CNI plugins with the conflist the agent wrote.
"""

from __future__ import annotations

import copy

import pytest

from routectl.agent.sync import compute_desired
from routectl.constants import MASQ_CHAIN
from tests.dataplane import scenario, topology
from tests.dataplane.scenario import Lab

pytestmark = [pytest.mark.dataplane, pytest.mark.slow]

ROUTES = {"10.244.0.0/24": "a", "10.244.1.0/24": "b"}


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_pod_traffic_nat_less_inside_masqueraded_outside(lab: Lab, backend: str):
    sc = scenario.build(lab, ROUTES, backend=backend)
    scenario.assert_wired_by_the_plugins(sc)
    scenario.assert_nat_less_and_masqueraded(sc)
    scenario.assert_host_port(sc)
    # an unchanged resync writes nothing: no iptables write, no CNI file write
    for loop in sc.loops.values():
        result = loop.sync_once()
        assert result.writes == 0 and result.cni is not None and not result.cni.written
    scenario.assert_del_releases_and_next_address(sc)
    scenario.assert_route_is_what_makes_it_work(
        sc, lambda: sc.topo.set_routes({k: v for k, v in ROUTES.items() if v != "b"}))
    scenario.assert_cleanup(sc)


def test_fresh_nodes_with_a_zero_non_masquerade_cidr_still_masquerade_egress(lab: Lab):
    """A 0.0.0.0/0 nonMasqueradeCIDR on freshly booted nodes (no last good rules, nothing installed):
    the entry is dropped and reported, the rest is installed, so internet egress is still masqueraded."""
    bad = copy.deepcopy(scenario.POOL)
    bad["spec"]["masquerade"]["nonMasqueradeCIDRs"] = [topology.VPC_CIDR, "0.0.0.0/0"]
    reports: list[str] = []
    sc = scenario.build(lab, ROUTES, pool=bad, reports=reports)
    assert len(reports) == 2 and all("0.0.0.0/0 is too wide" in r for r in reports), reports
    assert all("installed the rules without the rejected entries" in r for r in reports)
    for node in sc.topo.nodes.values():
        saved = node.ns.run("iptables-nft-save", "-t", "nat").stdout
        assert f"-j {MASQ_CHAIN}" in saved and "-j MASQUERADE" in saved and "0.0.0.0/0" not in saved
    scenario.assert_nat_less_and_masqueraded(sc)
    # the bad input stays: later syncs change nothing and the chain stays in place
    for name, loop in sc.loops.items():
        result = loop.syncer.sync(compute_desired(scenario.node_object(name), [bad]))
        assert result.writes == 0 and result.families == (4,)


def test_dual_stack_pods_get_both_families_from_the_plugins(lab: Lab):
    """Dual-stack nodes: one host-local range per family, IPv6 pod → pod NAT-less across the router,
    IPv6 egress masqueraded to the node's IPv6 address; DEL releases both addresses."""
    routes = dict(scenario.pod_routes(scenario.DUAL_NODES))
    sc = scenario.build(lab, routes, pool=scenario.DUAL_POOL, nodes=scenario.DUAL_NODES)
    scenario.assert_wired_by_the_plugins(sc)
    scenario.assert_nat_less_and_masqueraded(sc)
    scenario.assert_ipv6_nat_less_and_masqueraded(sc)
    scenario.assert_del_releases_and_next_address(sc, "b")
