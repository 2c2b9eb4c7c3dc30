"""Scale benchmark (issue 10): the real controller as its own process against the Kubernetes API emulator and
the fake GCE server (this process), N nodes. Prints one JSON line per figure and N:

- serve: N new nodes served (podCIDR + route + condition) from controller start, vs the cloud-bucket bound
  (and, issue 15, the first podCIDR written after process start with N nodes waiting: goal <= 1 s)
  max(0, N - burst) / rate of the controller's client bucket (goal <= 1.1 x); Lease renewals that came
  >= 50 % of the renew deadline after the previous one (goal 0) and whether the Lease was lost;
- startup: a new controller process with N existing nodes: process start to /readyz (leader, every node
  occupied, routes listed; goal <= 20 s at 5,000);
- resync: one steady-state RouteReconciler.sync at N routes, in a process of its own against the fake GCE
  of this one: that process's CPU seconds, every thread (goal <= 0.3; sync_thread_cpu_s is the syncing
  thread alone), mutating calls (goal 0), list calls vs pages;
- rss: the controller process's resident set after serving N nodes (goal <= 250 MB at 5,000);
- simulate: `routectl simulate --cloud gce --nodes N --pool-cidr 10.0.0.0/8 --route-limit 2N` wall time,
  and at the end the growth exponent of simulate wall time between the smallest and largest N (goal ~1).

    .venv/bin/python benchmarks/scale.py                      # N = 1000, 2000, 5000 (minutes)
    .venv/bin/python benchmarks/scale.py --nodes 1000 --skip-simulate
    .venv/bin/python benchmarks/scale.py --nodes 5000 --skip-simulate --only rss,resync
    .venv/bin/python benchmarks/scale.py --nodes 5000 --skip-simulate --only serve,rss \
        --cloud-budget 20 50 --op-delay 2 --concurrency 100   # GCE's budget, operations taking 2 s
    SCALE_PROFILE=/tmp/resync.prof ...   # also profile one more resync (pstats file)
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from routectl.cloud.gce import GCERouteDriver
from routectl.cloud.reconcile import RouteReconciler
from routectl.controller.leader import LEASE_AGENT
from routectl.routes.model import NodeRoutes
from routectl.sim.cluster import SimCluster

POOL = "10.0.0.0/8"
GCE_MUTATING = {"compute.routes.insert", "compute.routes.delete"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    vals: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                vals[key] = int(rest.split()[0]) / 1024
    return round(vals.get("VmRSS", 0.0), 1), round(vals.get("VmHWM", 0.0), 1)


class Controller:
    """`routectl controller` as a child process against the SimCluster's fakes."""

    def __init__(self, sim: SimCluster, identity: str, log_path: str,
                 env_extra: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        env = {**os.environ, **sim.controller_env(), "ROUTECTL_HEALTH_ADDRESS": f"127.0.0.1:{self.port}",
               "ROUTECTL_IDENTITY": identity, **(env_extra or {})}
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.started_wall = time.time()  # the emulator's request log stamps wall-clock time
        self.proc = subprocess.Popen([sys.executable, "-m", "routectl.cli", "controller", "--log-level",
                                      "WARNING"], env=env, stdout=self.log, stderr=self.log)

    def wait_ready(self, timeout: float) -> float | None:
        """Seconds from process start to /readyz 200, None on timeout or exit."""
        deadline = self.started + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if _ready(self.port):
                return time.monotonic() - self.started
            time.sleep(0.1)
        return None

    def stop(self) -> int | None:
        """SIGTERM (it releases the Lease) and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def _late_renewals(sim: SimCluster, since: int, renew_deadline: float) -> tuple[int, int, float]:
    """(renewals, renewals >= 50 % of the renew deadline after the previous one, largest gap)."""
    times = [r.time for r in sim.kube.requests.select(resource="leases", verb="patch", since=since,
                                                      user_agent=LEASE_AGENT) if r.status == 200]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return len(times), sum(1 for g in gaps if g >= 0.5 * renew_deadline), round(max(gaps, default=0.0), 3)


def _first_pod_cidr(sim: SimCluster, since: int, started_wall: float) -> tuple[float | None, float | None]:
    """Seconds to the controller's first accepted podCIDR PATCH (a Node, not its status) from its process
    start, and from the moment it held the Lease (its first accepted Lease write)."""
    times = [r.time for r in sim.kube.requests.select(resource="nodes", verb="patch", subresource=None,
                                                      since=since) if r.status == 200]
    leased = [r.time for r in sim.kube.requests.select(resource="leases", since=since, user_agent=LEASE_AGENT)
              if r.is_write and r.status in (200, 201)]
    if not times:
        return None, None
    return round(min(times) - started_wall, 3), round(min(times) - min(leased), 3) if leased else None


def _converged_count(sim: SimCluster) -> int:
    from routectl.sim.simulate import settled_count

    return settled_count(sim.node_digests())


FIGURES = ("serve", "rss", "startup", "resync")


def run(n: int, timeout: float, log_path: str, budget: tuple[float, int] | None = None,
        only: tuple[str, ...] = FIGURES, op_delay: float | None = None,
        concurrency: int | None = None) -> list[dict[str, Any]]:
    """Serve N new nodes, restart with N existing nodes, resync at N routes; JSON records (of `only`:
    the nodes are always served first, the other figures need them). `budget` is the controller's
    cloud (rate, burst); the simulation's own is far above GCE's published refill. `op_delay`: seconds
    until the fake's operations are DONE; `concurrency`: the controller's cloud calls in flight."""
    out: list[dict[str, Any]] = []
    sim = SimCluster(cloud="gce", nodes=0, pool_cidr=POOL, route_limit=2 * n + 100, run_controller=False)
    sim.start()
    try:
        cfg = sim.config()
        rate, burst = budget or (cfg.cloud_rate, cfg.cloud_burst)
        if op_delay is not None:
            sim.gce.op_delay = op_delay
        conc = concurrency or cfg.concurrency
        env = {"ROUTECTL_CLOUD_RATE": str(rate), "ROUTECTL_CLOUD_BURST": str(burst),
               "ROUTECTL_CONCURRENCY": str(conc)}
        sim.add_nodes(n)
        mark = sim.kube.requests.mark()
        ctl = Controller(sim, "bench-a", log_path, env)
        t0 = ctl.started
        served = None
        while time.monotonic() - t0 < timeout and ctl.proc.poll() is None:
            if sim.converged():
                served = time.monotonic() - t0
                break
            time.sleep(0.5)
        bound = max(0, n - burst) / rate
        renewals, late, max_gap = _late_renewals(sim, mark, cfg.renew_deadline)
        rss, hwm = _rss_mb(ctl.proc.pid) if ctl.proc.poll() is None else (None, None)
        first = _first_pod_cidr(sim, mark, ctl.started_wall)
        out.append({"bench": "serve", "nodes": n, "served_s": round(served, 2) if served else None,
                    "settled": _converged_count(sim), "bound_s": round(bound, 2),
                    "ratio": round(served / bound, 3) if served and bound else None,
                    "cloud_rate": rate, "cloud_burst": burst, "concurrency": conc,
                    "op_delay_s": sim.gce.op_delay,
                    "first_pod_cidr_s": first[0], "first_pod_cidr_after_lease_s": first[1],
                    "lease_renewals": renewals, "renewals_past_half_deadline": late,
                    "max_renew_gap_s": max_gap,
                    "renew_deadline_s": cfg.renew_deadline, "lease_lost": ctl.proc.poll() == 3})
        out.append({"bench": "rss", "nodes": n, "controller_rss_mb": rss, "controller_peak_rss_mb": hwm})
        ctl.stop()
        if "startup" in only:  # a new leader with N existing nodes: process start to ready
            ctl2 = Controller(sim, "bench-b", log_path, env)
            ready = ctl2.wait_ready(timeout)
            out.append({"bench": "startup", "nodes": n,
                        "start_to_ready_s": round(ready, 2) if ready else None})
            ctl2.stop()
        if "resync" in only:
            out.append(_resync(sim, n))
    finally:
        sim.stop()
    return [r for r in out if r["bench"] in only]


def _resync(sim: SimCluster, n: int) -> dict[str, Any]:
    """One steady-state RouteReconciler.sync at N routes, in a process of its own (`--resync-child`), so
    its CPU is the syncing side's alone (this process serves the fake GCE). The child syncs once to
    resolve every node, as the running controller has, says so, and syncs again on "go"."""
    nodes = [[x["metadata"]["name"], x["metadata"]["uid"], x["spec"]["providerID"],
              list(x["spec"].get("podCIDRs") or ())] for x in sim.nodes()]
    spec = {"project": sim.gce.project, "network": sim.gce.network, "cluster": sim.cluster_name,
            "endpoint": sim.gce.endpoint, "nodes": nodes, "profile": os.environ.get("SCALE_PROFILE")}
    child = subprocess.Popen([sys.executable, __file__, "--resync-child"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(spec) + "\n")
    child.stdin.flush()
    if child.stdout.readline().strip() != "warm":
        raise RuntimeError(f"resync child failed (exit {child.wait()})")
    sim.gce.reset_log()
    child.stdin.write("go\n")
    child.stdin.flush()
    line = child.stdout.readline()
    with sim.gce._lock:
        log = list(sim.gce.call_log)
    child.stdin.close()
    child.wait(timeout=600)
    figures = json.loads(line)
    routes = figures.pop("routes")
    return {"bench": "resync", "nodes": n, "routes": routes, **figures,
            "mutating_calls": sum(1 for _, p in log if p in GCE_MUTATING),
            "list_calls": sum(1 for _, p in log if p == "compute.routes.list"),
            "pages": math.ceil(max(routes, 1) / 500)}


def resync_child() -> None:
    """The syncing side of `_resync`: the spec on stdin, "warm" after the first sync, figures of the
    second as one JSON line after "go" (process CPU: every thread of this process); a profiled third
    once stdin is closed."""
    spec = json.loads(sys.stdin.readline())
    nodes = [NodeRoutes(name, uid, pid, tuple(cidrs)) for name, uid, pid, cidrs in spec["nodes"]]
    drv = GCERouteDriver(spec["project"], spec["network"], spec["cluster"], endpoint=spec["endpoint"],
                         rate=1000.0, burst=1000, concurrency=16)
    rec = RouteReconciler(drv, [POOL], concurrency=16)
    rec.sync(nodes)
    gc.collect()
    gc.freeze()  # what lives now lives on: out of the collector's full passes, as the controller does
    print("warm", flush=True)
    sys.stdin.readline()
    c0, t0, th0 = time.process_time(), time.monotonic(), time.thread_time()
    res = rec.sync(nodes)
    cpu, wall, thread_cpu = time.process_time() - c0, time.monotonic() - t0, time.thread_time() - th0
    print(json.dumps({"routes": sum(1 for s in res.nodes.values() if s.ok), "cpu_s": round(cpu, 3),
                      "wall_s": round(wall, 3), "sync_thread_cpu_s": round(thread_cpu, 3)}), flush=True)
    sys.stdin.read()  # the parent has read the fake's call log: further calls are not counted
    if spec["profile"]:  # one more sync under cProfile (thread CPU clock), stats to that file
        import cProfile

        prof = cProfile.Profile(time.thread_time)
        prof.runcall(rec.sync, nodes)
        prof.dump_stats(spec["profile"])
    rec.close()


def simulate(n: int, timeout: float) -> dict[str, Any]:
    """`routectl simulate` wall time for N GCE nodes."""
    cmd = [sys.executable, "-m", "routectl.cli", "simulate", "--cloud", "gce", "--nodes", str(n),
           "--pool-cidr", POOL, "--route-limit", str(2 * n), "--timeout", str(timeout), "--no-progress",
           "-o", "json"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 600)
    wall = time.monotonic() - t0
    converged = proc.returncode == 0
    return {"bench": "simulate", "nodes": n, "wall_s": round(wall, 2), "converged": converged,
            "exit": proc.returncode,
            "failure": None if converged else proc.stdout[-300:] + proc.stderr[-300:]}


def main() -> None:
    """Parse flags, run each N, print JSON lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 2000, 5000])
    p.add_argument("--timeout", type=float, default=600.0, help="per phase, seconds")
    p.add_argument("--skip-simulate", action="store_true")
    p.add_argument("--skip-controller", action="store_true", help="only the simulate figures")
    p.add_argument("--log", default="/tmp/routectl-scale-controllers.log", help="controllers' stderr")
    p.add_argument("--cloud-budget", nargs=2, type=float, metavar=("RATE", "BURST"),
                   help="the controller's mutating cloud calls per second and burst (default: the "
                        "simulation's 200/200; GCE's production default is 20 50)")
    p.add_argument("--op-delay", type=float, metavar="SECONDS",
                   help="seconds until the fake GCE's operations are DONE (default: the simulation's 0.05; "
                        "a busy project takes seconds)")
    p.add_argument("--concurrency", type=int, help="the controller's cloud calls in flight (default: the "
                                                        "simulation's 16)")
    p.add_argument("--only", default=",".join(FIGURES),
                   help=f"comma list of controller figures to print (of {','.join(FIGURES)}); the nodes are "
                        "served in any case")
    p.add_argument("--resync-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.resync_child:
        resync_child()
        return
    budget = (a.cloud_budget[0], int(a.cloud_budget[1])) if a.cloud_budget else None
    only = tuple(f.strip() for f in a.only.split(",") if f.strip())
    if not set(only) <= set(FIGURES):
        p.error(f"--only takes {', '.join(FIGURES)}")
    walls: dict[int, float] = {}
    for n in a.nodes:
        if not a.skip_controller:
            for rec in run(n, a.timeout, a.log, budget, only, a.op_delay, a.concurrency):
                print(json.dumps(rec), flush=True)
        if not a.skip_simulate:
            rec = simulate(n, a.timeout)
            print(json.dumps(rec), flush=True)
            if rec["converged"]:
                walls[n] = rec["wall_s"]
    if len(walls) >= 2:
        lo, hi = min(walls), max(walls)
        exponent = math.log(walls[hi] / walls[lo]) / math.log(hi / lo)
        print(json.dumps({"bench": "simulate_growth", "from_nodes": lo, "to_nodes": hi,
                          "exponent": round(exponent, 3)}), flush=True)


if __name__ == "__main__":
    main()
