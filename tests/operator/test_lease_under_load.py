"""The Lease is renewed on its own connection: a controller whose work client is saturated keeps leading."""

from __future__ import annotations

import time
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


def _block_loop(ctl: Any, seconds: float) -> None:
    """Hold the controller's own event loop (and so kopf and every handler) for `seconds`."""
    ctl._loop.call_soon_threadsafe(time.sleep, seconds)


def test_the_lease_is_renewed_while_the_controller_loop_is_busy(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=3, run_controller=False, lease_duration=LEASE)
    ctl = sim.start_controller(identity="slow-a")
    wait_for(lambda: ctl.is_leader, 30)
    mark = sim.kube.requests.mark()
    during: list[int] = []
    for _ in range(3):  # each block is longer than the renew deadline (2.4 s), shorter than the lease
        start = time.time()
        _block_loop(ctl, 3.0)
        time.sleep(3.2)
        during.append(sum(1 for t in _renewals(sim, mark) if start < t < start + 3.0))
    assert all(n >= 2 for n in during), during
    assert ctl.alive and ctl.is_leader and not ctl.controller.fenced
    sim.add_nodes(2)
    assert sim.wait_converged(60)


def test_a_hung_controller_loop_still_gives_the_lease_up(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=2, run_controller=False, lease_duration=LEASE)
    ctl = sim.start_controller(identity="hung-a")
    wait_for(lambda: ctl.is_leader, 30)
    _block_loop(ctl, 3 * LEASE)  # longer than the stall limit (the lease) plus the renew deadline
    wait_for(lambda: ctl.controller.fenced, 3 * LEASE)
    wait_for(lambda: not ctl.alive, 60)
    assert ctl.exit_code == 3
