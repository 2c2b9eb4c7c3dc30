"""Crash safety: SIGKILL `routectl controller` (a real subprocess) at random moments during a scale-up.

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

KILLS = 20
NODES = 200
DELETIONS = 20
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


def _lease_holder(sim: SimCluster, identity: str, timeout: float) -> bool:
    """Wait until `identity` holds the controller Lease (the final controller itself must converge)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sim.kube.exists("coordination.k8s.io/v1", "Lease", "routectl-controller", "default"):
            lease = sim.kube.get("coordination.k8s.io/v1", "Lease", "routectl-controller", "default")
            if lease["spec"].get("holderIdentity") == identity:
                return True
        time.sleep(0.2)
    return False


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

    def scale() -> None:  # 200 nodes in batches of 4, one node deleted after every second batch
        try:
            for batch in range(NODES // 4):
                sim.add_nodes(4)
                if batch % 2 == 1 and len(deleted) < DELETIONS:
                    victim = rng.choice(sim.node_names)
                    sim.delete_node(victim)
                    deleted.append(victim)
                time.sleep(1.4)
        finally:
            scaling_done.set()

    scaler = threading.Thread(target=scale, name="scale-up", daemon=True)
    scaler.start()
    kills = restarts = 0
    try:
        while kills < KILLS or not scaling_done.is_set():
            proc = _spawn(env, log)
            restarts += 1
            time.sleep(rng.uniform(0.5, 6.0))  # anywhere: importing, waiting for the lease, mid-work
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
        scaler.join(timeout=60)
        final = _spawn({**env, "ROUTECTL_IDENTITY": "final"}, log)
        restarts += 1
        try:
            converged = _lease_holder(sim, "final", 60) and sim.wait_converged(180)
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
                      "nodes_deleted": len(deleted), "nodes_final": len(sim.nodes()),
                      "seconds": round(elapsed, 1), "violations": len(violations)}))
    assert converged, (tmp_path / "controller.log").read_text()[-3000:]
    assert kills >= KILLS
    assert violations == []
    assert final.returncode == 0
    assert len(sim.nodes()) == NODES - len(deleted)
    pool = sim.kube.get("routectl.io/v1alpha1", "PodCIDRPool", "default")
    assert pool["status"]["allocated"] == NODES - len(deleted)
