"""Write benchmark (issue 15): API writes and conflicts per node while the kubelet races the controller.

The real controller (`routectl controller`, its own process, real kopf) against the embedded API server and
the fake GCE server. Two runs, each printing one JSON line:

- arriving: the controller is up; N Nodes register kubelet-style (create, then a status update at once, and
  another a few nodes later), racing the controller's podCIDR write. From the emulator's request log
  (routectl.sim.kube_log), per node: podCIDR writes (goal <= 1.1), 409/422 answers to the controller's Node
  writes (goal <= 0.02), condition writes, Event posts; and the seconds until every node has converged;
- waiting: N Nodes without a podCIDR exist before the controller starts: seconds from process start to the
  first podCIDR written, and the same per-node figures.

    .venv/bin/python benchmarks/writes.py --nodes 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from typing import Any

from scale import Controller  # benchmarks/scale.py: the controller as a child process

from routectl.controller.kube import JSON_PATCH
from routectl.controller.leader import LEASE_AGENT
from routectl.sim.cluster import SimCluster

POOL = "10.0.0.0/8"


def heartbeat(sim: SimCluster, name: str, beat: int) -> None:
    """A kubelet status update (the Node's resourceVersion moves on)."""
    sim.kube.patch_status("v1", "Node", name, {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": f"kubelet beat {beat}"}]}},
        content_type="application/strategic-merge-patch+json")


def arrive(sim: SimCluster, n: int, lag: int = 5) -> None:
    """N Nodes register: create, status update at once, and a second update `lag` nodes later."""
    names: list[str] = []
    for i in range(n):
        names += sim.add_nodes(1)
        heartbeat(sim, names[-1], 1)
        if i >= lag:
            heartbeat(sim, names[i - lag], 2)


def figures(sim: SimCluster, since: int, n: int) -> dict[str, Any]:
    """Per-node write figures of everything but the Lease client, from the request log."""
    recs = [r for r in sim.kube.requests.select(since=since, writes=True) if LEASE_AGENT not in r.user_agent]
    node_writes = [r for r in recs if r.resource == "nodes"]
    podcidr = [r for r in node_writes if r.subresource is None and r.content_type.startswith(JSON_PATCH)]
    conditions = [r for r in node_writes if r.subresource == "status"]
    conflicts = [r for r in node_writes if r.status in (409, 422)]
    events = [r for r in recs if r.resource == "events"]
    gets = sim.kube.requests.select(since=since, verb="get", resource="nodes")
    return {
        "podcidr_writes_per_node": round(len(podcidr) / n, 3),
        "conflicts_per_node": round(len(conflicts) / n, 4), "conflicts": len(conflicts),
        "condition_writes_per_node": round(len(conditions) / n, 3),
        "node_writes_per_node": round(len(node_writes) / n, 3),
        "node_gets_per_node": round(len(gets) / n, 3),
        "events_per_node": round(len(events) / n, 3),
    }


def first_podcidr_s(sim: SimCluster, since: int, started_wall: float) -> float | None:
    """Seconds from `started_wall` to the first podCIDR PATCH answered 200."""
    for r in sim.kube.requests.select(since=since, verb="patch", resource="nodes", subresource=None):
        if r.status == 200 and r.content_type.startswith(JSON_PATCH):
            return round(r.time - started_wall, 3)
    return None


def events_dropped(ctl: Controller) -> float | None:
    """routectl_events_dropped_total from the controller's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ctl.port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("routectl_events_dropped_total "):
            return float(line.split()[1])
    return None


def wait_converged(sim: SimCluster, ctl: Controller, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and ctl.proc.poll() is None:
        if sim.converged():
            return time.monotonic() - t0
        time.sleep(0.25)
    return None


def run_arriving(n: int, timeout: float, log_path: str) -> dict[str, Any]:
    sim = SimCluster(cloud="gce", nodes=0, pool_cidr=POOL, route_limit=2 * n + 100, run_controller=False)
    sim.start()
    try:
        ctl = Controller(sim, "writes-a", log_path)
        if ctl.wait_ready(timeout) is None:
            raise SystemExit("controller did not become ready")
        mark = sim.kube.requests.mark()
        t0 = time.monotonic()
        kubelets = threading.Thread(target=arrive, args=(sim, n), daemon=True)
        kubelets.start()
        kubelets.join()
        arrived = time.monotonic() - t0
        settled = wait_converged(sim, ctl, timeout)
        time.sleep(1.0)  # late writes (pool status debounce, Events) land in the log too
        out = {"bench": "writes-arriving", "nodes": n, "arrival_s": round(arrived, 2),
               "converged_after_arrival_s": round(settled, 2) if settled is not None else None,
               **figures(sim, mark, n), "events_dropped": events_dropped(ctl)}
        ctl.stop()
        return out
    finally:
        sim.stop()


def run_waiting(n: int, timeout: float, log_path: str) -> dict[str, Any]:
    sim = SimCluster(cloud="gce", nodes=0, pool_cidr=POOL, route_limit=2 * n + 100, run_controller=False)
    sim.start()
    try:
        arrive(sim, n)
        mark = sim.kube.requests.mark()
        started_wall = time.time()
        ctl = Controller(sim, "writes-b", log_path)
        settled = wait_converged(sim, ctl, timeout)
        time.sleep(1.0)
        first = first_podcidr_s(sim, mark, started_wall)
        out = {"bench": "writes-waiting", "nodes": n, "first_podcidr_s": first,
               "converged_s": round(settled, 2) if settled is not None else None, **figures(sim, mark, n),
               "events_dropped": events_dropped(ctl)}
        ctl.stop()
        return out
    finally:
        sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--log", default="/tmp/routectl-bench-writes.log", help="controller process output")
    ap.add_argument("--only", choices=("arriving", "waiting"))
    args = ap.parse_args()
    runs = {"arriving": run_arriving, "waiting": run_waiting}
    for name, fn in runs.items():
        if args.only in (None, name):
            print(json.dumps(fn(args.nodes, args.timeout, args.log)), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
