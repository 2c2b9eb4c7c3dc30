"""Dataplane proof with hand-written router routes: the topology and the agent's rules on their own.

The cloud-parametrised test (test_dataplane_cloud.py) runs the same scenario with the routes routectl
programmed into the fake GCE and moto; this one pins the scenario itself, for both iptables backends.
"""

from __future__ import annotations

import pytest

from routectl.agent.sync import compute_desired
from tests.dataplane import scenario
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
