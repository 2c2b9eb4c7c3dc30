"""Crash safety: SIGKILL `routectl controller` (a real subprocess) at random moments during a scale-up.

Most kills land
while the victim leads (after it took the Lease, then a random delay): a kill during import proves little.
The controller holds nothing it cannot rebuild: podCIDRs are written conditionally and re-occupied
before anything is allocated after a restart, and routes are reconciled by an idempotent diff. After
at least 20 kills and restarts during a 200-node scale-up (with some scale-down churn), one last
controller converges and the invariants must hold: no two nodes share a block, every node has its
route to its own instance, no route of ours is left without a node. Figures are printed as a JSON line.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from routectl.cloud.gce import name_prefix
from routectl.sim.cluster import SimCluster

KILLS = int(os.environ.get("ROUTECTL_KILLS", "12"))  # SIGKILLs per run (a soak asks for more)
LEAD_TIMEOUT = 60.0  # how long a victim may take to import and win the Lease (2 cores, busy CI)
NODES = 160
DELETIONS = 16
POOL = ipaddress.ip_network("10.244.0.0/16")


def invariant_violations(sim: SimCluster) -> list[str]:
    """Every way the cluster breaks the issue's invariants (empty list = sound)."""
    violations: list[str] = []
    nodes = sim.nodes()
    holders: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        name, cidr = n["metadata"]["name"], (n.get("spec") or {}).get("podCIDR")
        if not cidr:
            violations.append(f"node {name} has no podCIDR")
            continue
        if not ipaddress.ip_network(cidr).subnet_of(POOL):
            violations.append(f"node {name} has {cidr} outside the pool")
        holders[cidr].append(name)
    for cidr, names in holders.items():
        if len(names) > 1:
            violations.append(f"block {cidr} shared by {', '.join(sorted(names))}")
    prefix = name_prefix(sim.cluster_name) + "-"
    ours = {r["destRange"]: r.get("nextHopInstance", "") for r in sim.gce.routes_snapshot().values()
            if r["name"].startswith(prefix)}
    for cidr, names in holders.items():
        hop = ours.get(cidr)
        if hop is None:
            violations.append(f"node {names[0]} ({cidr}) has no route")
        elif not hop.endswith(f"/instances/{names[0]}"):
            violations.append(f"route {cidr} goes to {hop}, not to node {names[0]}")
    for dest in ours:
        if dest not in holders:
            violations.append(f"route {dest} is left without a node")
    return violations


def _holder(sim: SimCluster) -> str:
    """Who holds the controller Lease now ("" when nobody or no Lease yet)."""
    if not sim.kube.exists("coordination.k8s.io/v1", "Lease", "routectl-controller", "default"):
        return ""
    lease = sim.kube.get("coordination.k8s.io/v1", "Lease", "routectl-controller", "default")
    return str(lease["spec"].get("holderIdentity") or "")


def _lease_holder(sim: SimCluster, identity: str, timeout: float,
                  proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until `identity` holds the controller Lease (False on timeout or when `proc` died first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _holder(sim) == identity:
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


class LagProbe:
    """Measures how late the API emulator's loop answers a no-op helper call (the scale-up's `create`
    waits on the same loop), so a stall shows up as a figure instead of a mystery."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            t = time.monotonic()
            try:
                self.sim.kube.call(lambda s: None)
            except Exception:  # the emulator stopped: nothing more to measure
                return
            self.worst = max(self.worst, time.monotonic() - t)

    def __enter__(self) -> LagProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _spawn(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "routectl.cli", "controller", "--log-level", "WARNING"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkill_during_scale_up_keeps_blocks_unique_and_routes_exact(make_sim: Any, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("ROUTECTL_KILL_SEED", "4242")))
    sim = make_sim(cloud="gce", nodes=0, route_limit=1000, run_controller=False, lease_duration=2.0,
                   resync_seconds=3.0)
    env = {**os.environ, **sim.controller_env(), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "controller.log", "wb")  # noqa: SIM115 - closed below, shared by every run
    started = time.monotonic()
    deleted: list[str] = []
    scaling_done = threading.Event()
    scale_error: list[BaseException] = []

    def scale() -> None:  # NODES nodes in batches of 4, one node deleted after every second batch
        try:
            for batch in range(NODES // 4):
                sim.add_nodes(4)
                if batch % 2 == 1 and len(deleted) < DELETIONS:
                    victim = rng.choice(sim.node_names)
                    sim.delete_node(victim)
                    deleted.append(victim)
                time.sleep(1.2)
        except BaseException as exc:  # kept for the main thread, which fails the test with it at once
            scale_error.append(exc)
        finally:
            scaling_done.set()

    scaler = threading.Thread(target=scale, name="scale-up", daemon=True)
    kills = restarts = kills_leading = 0
    with LagProbe(sim) as probe:
        scaler.start()
        try:
            while kills < KILLS or not scaling_done.is_set():
                if scale_error:  # the scale-up died: fail now with its cause, not later with a wrong count
                    raise AssertionError(f"the scale-up thread failed after {len(sim.node_names)} nodes "
                                         f"(emulator lag so far {probe.worst:.1f}s): {scale_error[0]!r}"
                                         ) from scale_error[0]
                identity = f"victim-{restarts}"
                proc = _spawn({**env, "ROUTECTL_IDENTITY": identity}, log)
                restarts += 1
                if kills % 4 == 3:  # now and then anywhere: importing, standing by, just elected
                    time.sleep(rng.uniform(0.2, 4.0))
                else:  # mostly while it leads: after it took the Lease, somewhere in its work
                    _lease_holder(sim, identity, LEAD_TIMEOUT, proc)
                    time.sleep(rng.uniform(0.0, 2.5))
                kills_leading += _holder(sim) == identity
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
            scaler.join(timeout=60)
            if scale_error:
                raise AssertionError(f"the scale-up thread failed: {scale_error[0]!r}") from scale_error[0]
            final = _spawn({**env, "ROUTECTL_IDENTITY": "final"}, log)
            restarts += 1
            try:
                converged = _lease_holder(sim, "final", 120) and sim.wait_converged(240)
                deadline = time.monotonic() + 60  # a resync or two may still be deleting stale routes
                while invariant_violations(sim) and time.monotonic() < deadline:
                    time.sleep(0.5)
            finally:
                final.send_signal(signal.SIGTERM)
                final.wait(timeout=30)
        finally:
            log.close()
    violations = invariant_violations(sim)
    elapsed = time.monotonic() - started
    print(json.dumps({"test": "sigkill_scale_up", "kills": kills, "restarts": restarts, "nodes_added": NODES,
                      "kills_while_leading": kills_leading,
                      "nodes_deleted": len(deleted), "nodes_final": len(sim.nodes()),
                      "emulator_worst_lag_s": round(probe.worst, 2),
                      "seconds": round(elapsed, 1), "violations": len(violations)}))
    assert converged, (tmp_path / "controller.log").read_text()[-3000:]
    assert kills >= KILLS
    assert kills_leading >= KILLS // 2, "most kills must land while the victim leads, not while it imports"
    assert violations == []
    assert final.returncode == 0
    assert len(sim.nodes()) == NODES - len(deleted)
    pool = sim.kube.get("routectl.io/v1alpha1", "PodCIDRPool", "default")
    assert pool["status"]["allocated"] == NODES - len(deleted)
