"""Convergence benchmark: N nodes from no routes to all routes against the fake GCE server throttled by an
EC2-like token bucket (burst B, refill r/s), then a steady-state pass. Prints one JSON line per figure.

The fake runs in its own process (`python -m routectl.sim.fake_gce`), like a real API would, so its CPU
does not compete with the controller's for one GIL. The lower bound for N creates through the bucket is
max(0, N - B) / r seconds; `ratio` = wall / bound (goal <= 1.15 with zero failed creates). Steady state:
zero mutating calls, list calls = pages only.

    .venv/bin/python benchmarks/converge.py                 # N = 100, 1000, 5000
    .venv/bin/python benchmarks/converge.py --nodes 100 1000 --rate 50 --burst 200
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

from routectl.cloud.gce import GCERouteDriver
from routectl.cloud.reconcile import RouteReconciler
from routectl.routes.model import NodeRoutes

ZONE = "us-central1-a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin(endpoint: str, path: str, method: str = "GET") -> Any:
    req = urllib.request.Request(f"{endpoint}{path}", method=method, data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


class FakeProcess:
    """`python -m routectl.sim.fake_gce` in a child process, with N instances node-0..N-1."""

    def __init__(self, n: int, *, rate: float, burst: int, op_delay: float, latency: float) -> None:
        port = _free_port()
        cmd = [sys.executable, "-m", "routectl.sim.fake_gce", "--port", str(port),
               "--routes-quota", str(n + 100), "--rate", str(rate), "--burst", str(burst),
               "--op-delay", str(op_delay), "--latency", str(latency),
               "--instance-count", str(n), "--zone", ZONE]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        self.endpoint = json.loads(line)["endpoint"]

    def calls(self) -> tuple[Counter[str], int]:
        got = _admin(self.endpoint, "/_fake/calls")
        return Counter(p for _, p in got["calls"]), int(got["throttled"])

    def routes(self) -> dict[str, Any]:
        return _admin(self.endpoint, "/_fake/routes")

    def reset(self) -> None:
        _admin(self.endpoint, "/_fake/reset", "POST")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run(n: int, *, burst: int, rate: float, client_share: float, concurrency: int, op_delay: float,
        latency: float) -> list[dict]:
    """Converge N nodes, then resync; returns the JSON records."""
    fake = FakeProcess(n, rate=rate, burst=burst, op_delay=op_delay, latency=latency)
    try:
        nodes = [NodeRoutes(f"node-{i}", f"{i:08d}-0000-4000-8000-000000000000",
                            f"gce://sim-project/{ZONE}/node-{i}", (f"10.{i // 256}.{i % 256}.0/24",))
                 for i in range(n)]
        time.sleep(burst / rate)  # let the server's bucket fill up to B, as for an idle account
        fake.reset()
        drv = GCERouteDriver("sim-project", "default", "bench", endpoint=fake.endpoint,
                             rate=rate * client_share, burst=burst, concurrency=concurrency)
        rec = RouteReconciler(drv, ["10.0.0.0/8"], concurrency=concurrency)
        t0 = time.monotonic()
        res = rec.sync(nodes)
        wall = time.monotonic() - t0
        bound = max(0, n - burst) / rate
        routes = fake.routes()
        ours = sum(1 for name in routes if name.startswith(drv.prefix + "-"))
        server, throttled = fake.calls()
        out = [{
            "bench": "converge", "cloud": "gce-fake", "nodes": n, "burst": burst, "rate_per_s": rate,
            "client_rate_per_s": round(rate * client_share, 3), "concurrency": concurrency,
            "op_delay_s": op_delay,
            "wall_s": round(wall, 3), "bound_s": round(bound, 3),
            "ratio": round(wall / bound, 3) if bound else None,
            "routes_created": ours, "all_nodes_ok": all(s.ok for s in res.nodes.values()),
            "failed_creates": len(res.failed) + len(res.refused),
            "calls": res.calls.calls, "throttled_answers": throttled, "server_calls": dict(server),
        }]
        fake.reset()
        t0 = time.monotonic()
        res2 = rec.sync(nodes)
        wall2 = time.monotonic() - t0
        server, throttled = fake.calls()
        out.append({
            "bench": "steady_state", "cloud": "gce-fake", "nodes": n, "routes": ours,
            "wall_s": round(wall2, 3),
            "mutating_calls": server["compute.routes.insert"] + server["compute.routes.delete"],
            "list_calls": server["compute.routes.list"], "pages": math.ceil(max(ours, 1) / 500),
            "server_calls": dict(server), "all_nodes_ok": all(s.ok for s in res2.nodes.values()),
        })
        return out
    finally:
        fake.stop()


def main() -> None:
    """Parse flags, run each N, print JSON lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--burst", type=int, default=200, help="server bucket size B (EC2 mutating actions: 200)")
    p.add_argument("--rate", type=float, default=50.0, help="server refill r per second")
    p.add_argument("--client-share", type=float, default=0.97,
                   help="client bucket rate as a share of r (stay below the published limit)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--op-delay", type=float, default=0.05, help="seconds until an operation is DONE")
    p.add_argument("--latency", type=float, default=0.0, help="added per-request server latency")
    a = p.parse_args()
    import google.cloud.compute_v1  # noqa: F401  (import once before timing, as a running controller has)

    for n in a.nodes:
        for rec in run(n, burst=a.burst, rate=a.rate, client_share=a.client_share, concurrency=a.concurrency,
                       op_delay=a.op_delay, latency=a.latency):
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
