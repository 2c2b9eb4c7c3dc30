"""At most one active allocator: Lease-based election between two controllers, and their health endpoints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from routectl.sim.cluster import SimCluster
from tests.operator.conftest import wait_for


def _holder(sim: SimCluster) -> str | None:
    if not sim.kube.exists("coordination.k8s.io/v1", "Lease", "routectl-controller", "default"):
        return None
    lease = sim.kube.get("coordination.k8s.io/v1", "Lease", "routectl-controller", "default")
    return lease["spec"].get("holderIdentity") or None


def _node_writers(sim: SimCluster, since: int = 0) -> set[str]:
    """Identities (from the User-Agent) of every client that wrote to Nodes."""
    return {r.user_agent.split("(", 1)[-1].rstrip(")") for r in
            sim.kube.requests.select(resource="nodes", writes=True, since=since)}


def test_two_controllers_exactly_one_allocates_then_the_other_takes_over(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=10, run_controller=False)
    a = sim.start_controller(identity="ctl-a")
    b = sim.start_controller(identity="ctl-b")
    assert sim.wait_converged(60)
    leader, standby = (a, b) if _holder(sim) == "ctl-a" else (b, a)
    assert leader.is_leader and not standby.is_leader
    assert standby.controller.handled == 0 and standby.controller.allocator.allocations() == []
    assert _node_writers(sim) == {leader.config.identity}
    leader.stop()  # clean shutdown releases the Lease: the standby starts at once
    wait_for(lambda: standby.is_leader, 30)
    mark = sim.kube.requests.mark()
    sim.add_nodes(5)
    assert sim.wait_converged(60)
    assert _node_writers(sim, since=mark) == {standby.config.identity}
    cidrs = [n["spec"]["podCIDR"] for n in sim.nodes()]
    assert len(set(cidrs)) == 15


def test_standby_process_takes_over_within_its_lease_when_the_leader_is_killed(make_sim: Any,
                                                                              tmp_path: Path) -> None:
    sim = make_sim(cloud="gce", nodes=5, run_controller=False, lease_duration=3.0)
    base = {**os.environ, **sim.controller_env()}
    log = open(tmp_path / "controllers.log", "wb")  # noqa: SIM115 - closed in finally
    cmd = [sys.executable, "-m", "routectl.cli", "controller", "--log-level", "WARNING"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        first = subprocess.Popen(cmd, env={**base, "ROUTECTL_IDENTITY": "proc-a"}, stdout=log, stderr=log)
        procs.append(first)
        assert sim.wait_converged(60)
        assert _holder(sim) == "proc-a"
        port = _free_port()
        second = subprocess.Popen(cmd, env={**base, "ROUTECTL_IDENTITY": "proc-b",
                                            "ROUTECTL_HEALTH_ADDRESS": f"127.0.0.1:{port}"},
                                  stdout=log, stderr=log)
        procs.append(second)
        # the window starts once the standby runs (imported, alive, not ready), not while it imports
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 503, 60)
        time.sleep(4.0)  # more than a lease duration: the standby must not take a lease that is renewed
        assert _holder(sim) == "proc-a"
        sim.add_nodes(3)
        assert sim.wait_converged(60)
        assert _node_writers(sim) == {"proc-a"}
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed = time.monotonic()
        wait_for(lambda: _holder(sim) == "proc-b", 30)
        takeover = time.monotonic() - killed
        mark = sim.kube.requests.mark()
        sim.add_nodes(3)
        assert sim.wait_converged(60)
        assert _node_writers(sim, since=mark) == {"proc-b"}
        print(json.dumps({"test": "sigkill_takeover", "lease_seconds": 3.0,
                          "takeover_seconds": round(takeover, 2)}))
        assert len({n["spec"]["podCIDR"] for n in sim.nodes()}) == 11
        second.send_signal(signal.SIGTERM)  # clean stop: exit 0 and the Lease released for a successor
        assert second.wait(timeout=30) == 0
        assert _holder(sim) is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
        log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str) -> int:
    """HTTP status of `url`, 0 while nothing listens there yet."""
    try:
        return _get(url)[0]
    except OSError:
        return 0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_liveness_readiness_and_metrics(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=3, run_controller=False)
    leader = sim.start_controller(identity="m-leader")
    assert sim.wait_converged(60)
    standby = sim.start_controller(identity="m-standby")
    wait_for(lambda: standby.controller is not None and standby.controller.health_port, 30)
    lport, sport = leader.controller.health_port, standby.controller.health_port
    assert _get(f"http://127.0.0.1:{lport}/healthz")[0] == 200
    assert _get(f"http://127.0.0.1:{lport}/readyz")[0] == 200
    assert _get(f"http://127.0.0.1:{sport}/healthz")[0] == 200  # a standby is alive ...
    assert _get(f"http://127.0.0.1:{sport}/readyz")[0] == 503   # ... but not serving
    status, text = _get(f"http://127.0.0.1:{lport}/metrics")
    assert status == 200
    lines = set(text.splitlines())
    assert 'routectl_pool_allocated_blocks{pool="default"} 3.0' in lines
    assert 'routectl_pool_free_blocks{pool="default"} 253.0' in lines
    assert 'routectl_allocations_total{pool="default"} 3.0' in lines
    assert 'routectl_cloud_calls_total{operation="routes.insert"} 3.0' in lines
    assert 'routectl_route_operations_total{operation="create",result="ok"} 3.0' in lines
    assert 'routectl_route_table_headroom{table="default"} 247.0' in lines
    assert "routectl_leader 1.0" in lines
    assert {"routectl_routes_desired 3.0", "routectl_routes_actual 3.0"} <= lines
    assert any(x.startswith("routectl_reconcile_duration_seconds_count") for x in lines)
    assert any(x.startswith("routectl_cloud_throttled_calls_total") for x in lines)
    standby_metrics = set(_get(f"http://127.0.0.1:{sport}/metrics")[1].splitlines())
    assert "routectl_leader 0.0" in standby_metrics or "routectl_leader 0" in standby_metrics


def test_a_leader_whose_renew_hangs_stops_writing_before_the_standby_takes_over(make_sim: Any) -> None:
    """The API client's own timeout (30 s, retried) is far longer than the Lease: a renew must be cut off
    at the renew deadline and the old leader fenced, or two allocators write Nodes at once."""
    sim = make_sim(cloud="gce", nodes=3, run_controller=False, lease_duration=3.0)
    old = sim.start_controller(identity="hung-a")
    assert sim.wait_converged(60)
    standby = sim.start_controller(identity="fresh-b")
    wait_for(lambda: standby.controller is not None, 30)
    assert _holder(sim) == "hung-a"
    # every Lease call of the old leader hangs 60 s and then fails; the standby's calls are untouched
    fault = sim.kube.inject_fault(resource="leases", user_agent="(hung-a)", code=503, times=None, delay=60.0)
    wait_for(lambda: _holder(sim) == "fresh-b", 30)
    mark = sim.kube.requests.mark()
    sim.add_nodes(6)
    assert sim.wait_converged(60)
    assert fault.hits >= 1
    assert _node_writers(sim, since=mark) == {"fresh-b"}
    wait_for(lambda: not old.alive, 30)
    assert old.controller.fenced and old.exit_code != 0
    assert len({n["spec"]["podCIDR"] for n in sim.nodes()}) == 9
