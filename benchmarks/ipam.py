"""IPAM benchmark: occupy 5,000 existing + allocate 5,000 new blocks; prints one JSON line per case.

Cases: CidrSet alone (the bitmap core; goal ≤ 50 ms total and ≤ 1 bit of state per block) and the whole
Allocator (rebuild from 5,000 nodes then allocate 5,000 nodes: pool choice, findings, ownership), for an
IPv4 /8 with /24 blocks and an IPv6 /48 with /64 blocks. Existing blocks are spread at random (seeded)
and given as strings, as read from Node.spec.podCIDRs. Each case runs REPEATS times on fresh state; the
best run is reported (the usual timeit practice: the others measure noise from other processes), with
the median next to it. Run: `.venv/bin/python benchmarks/ipam.py`.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable

from routectl.ipam.allocator import Allocator, NodeCIDRs
from routectl.ipam.cidrset import CidrSet
from routectl.ipam.model import PoolSpec

REPEATS = 7
EXISTING = 5000
NEW = 5000
CASES = (("ipv4", "10.0.0.0/8", 24), ("ipv6", "fd00:1234:5678::/48", 64))


def existing_blocks(cidr: str, mask: int) -> list[str]:
    """EXISTING distinct blocks at random positions, as strings."""
    s = CidrSet(cidr, mask)
    rng = random.Random(42)
    return [str(s.block(i)) for i in rng.sample(range(s.total), EXISTING)]


def best_of(run: Callable[[], tuple[float, float, float]]) -> tuple[tuple[float, float, float], float]:
    """Run REPEATS times; return the fastest (t0, t1, t2) and the median total in ms."""
    runs = [run() for _ in range(REPEATS)]
    totals = [(t2 - t0) * 1000 for t0, _, t2 in runs]
    return min(runs, key=lambda r: r[2] - r[0]), statistics.median(totals)


def bench_cidrset(family: str, cidr: str, mask: int) -> dict[str, object]:
    blocks = existing_blocks(cidr, mask)
    sets: list[CidrSet] = []

    def run() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        s = CidrSet(cidr, mask)
        for b in blocks:
            s.occupy(b)
        t1 = time.perf_counter()
        for _ in range(NEW):
            s.allocate()
        t2 = time.perf_counter()
        sets.append(s)
        return t0, t1, t2

    (t0, t1, t2), median_ms = best_of(run)
    s = sets[-1]
    assert s.used == EXISTING + NEW
    total_ms = (t2 - t0) * 1000
    return {
        "bench": "ipam.cidrset",
        "family": family,
        "cidr": cidr,
        "mask": mask,
        "blocks": s.total,
        "occupied": EXISTING,
        "allocated": NEW,
        "total_ms": round(total_ms, 2),
        "median_total_ms": round(median_ms, 2),
        "occupy_us_per_op": round((t1 - t0) * 1e6 / EXISTING, 2),
        "allocate_us_per_op": round((t2 - t1) * 1e6 / NEW, 2),
        "us_per_op": round(total_ms * 1000 / (EXISTING + NEW), 2),
        "state_bytes": s.state_bytes,
        "state_bytes_per_block": s.state_bytes / s.total,
        "state_bits_per_block": s.state_bytes * 8 / s.total,
        "goal_total_ms": 50,
        "goal_met": total_ms <= 50 and s.state_bytes * 8 / s.total <= 1,
    }


def bench_allocator(family: str, cidr: str, mask: int) -> dict[str, object]:
    blocks = existing_blocks(cidr, mask)
    spec = PoolSpec("bench", (cidr,), ipv4_mask=mask if family == "ipv4" else 24, ipv6_mask=mask)
    nodes = [NodeCIDRs(f"old-{i:05d}", (b,)) for i, b in enumerate(blocks)]
    names = [f"new-{i:05d}" for i in range(NEW)]
    done: list[Allocator] = []

    def run() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        a = Allocator()
        a.set_pools([spec])
        findings = a.rebuild(nodes)
        t1 = time.perf_counter()
        for name in names:
            a.allocate(name, {})
        t2 = time.perf_counter()
        assert not findings
        done.append(a)
        return t0, t1, t2

    (t0, t1, t2), median_ms = best_of(run)
    assert done[-1].usage("bench").allocated == EXISTING + NEW
    total_ms = (t2 - t0) * 1000
    return {
        "bench": "ipam.allocator",
        "family": family,
        "cidr": cidr,
        "mask": mask,
        "rebuilt_nodes": EXISTING,
        "allocated_nodes": NEW,
        "total_ms": round(total_ms, 2),
        "median_total_ms": round(median_ms, 2),
        "rebuild_us_per_node": round((t1 - t0) * 1e6 / EXISTING, 2),
        "allocate_us_per_node": round((t2 - t1) * 1e6 / NEW, 2),
        "us_per_op": round(total_ms * 1000 / (EXISTING + NEW), 2),
    }


def main() -> None:
    for case in CASES:
        print(json.dumps(bench_cidrset(*case)), flush=True)
    for case in CASES:
        print(json.dumps(bench_allocator(*case)), flush=True)


if __name__ == "__main__":
    main()
