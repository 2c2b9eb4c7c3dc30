"""The Lease is renewed on its own connection: a controller whose work client is saturated keeps leading."""

from __future__ import annotations

from typing import Any

from routectl import __version__
from routectl.controller.leader import LEASE_AGENT
from routectl.sim.cluster import SimCluster
from tests.operator.conftest import wait_for

LEASE = 4.0  # renew deadline 2.4 s, retry period 0.5 s (SimCluster's ratios)
HANG = 8.0  # every request of the work client is answered only after this long


def _renewals(sim: SimCluster, since: int) -> list[float]:
    """Times of the successful Lease writes of the elector's own client since `since`."""
    return [r.time for r in sim.kube.requests.select(resource="leases", verb="patch", since=since,
                                                     user_agent=LEASE_AGENT) if r.status == 200]


def test_the_lease_is_renewed_while_every_work_connection_hangs(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=0, run_controller=False, lease_duration=LEASE)
    ctl = sim.start_controller(identity="busy-a")
    wait_for(lambda: ctl.is_leader, 30)
    # Hang every request of the controller's work client ("routectl/<v> (busy-a)"), not the elector's
    # ("routectl-leader-election/<v> (busy-a)"), then give it more node work than it has connections.
    fault = sim.kube.inject_fault(user_agent=f"routectl/{__version__} (busy-a)", code=503, times=None,
                                  delay=HANG)
    mark = sim.kube.requests.mark()
    sim.add_nodes(48)
    wait_for(lambda: fault.hits >= 32, 30)  # the work client's 32 connections are all held
    window_end = sim.kube.requests.select(since=mark)[-1].time + 3 * LEASE
    wait_for(lambda: (_renewals(sim, mark) or [0.0])[-1] >= window_end, 3 * LEASE + 30)
    assert ctl.alive and ctl.is_leader and not ctl.controller.fenced
    lease = sim.kube.get("coordination.k8s.io/v1", "Lease", "routectl-controller", "default")
    assert lease["spec"]["holderIdentity"] == "busy-a"
    renewals = _renewals(sim, mark)
    assert len(renewals) >= 4
    sim.kube.clear_faults()
    assert sim.wait_converged(90)
    assert ctl.alive and ctl.exit_code is None
    assert len({n["spec"]["podCIDR"] for n in sim.nodes()}) == 48
