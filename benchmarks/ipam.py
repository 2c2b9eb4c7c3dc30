"""IPAM benchmark: occupy 5,000 existing + allocate 5,000 new blocks; prints one JSON line per case.

Cases: CidrSet alone (the bitmap core; goal ≤ 50 ms total and ≤ 1 bit of state per block) and the whole
Allocator (rebuild from 5,000 nodes then allocate 5,000 nodes: pool choice, findings, ownership), for an
IPv4 /8 with /24 blocks and an IPv6 /48 with /64 blocks. Existing blocks are spread at random (seeded)
and given as strings, as read from Node.spec.podCIDRs. Each case runs REPEATS times on fresh state; the
MEDIAN run is reported and judged against the goal (what a restart typically costs, not the luckiest
run), with the best run next to it as extra information. Run: `.venv/bin/python benchmarks/ipam.py`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

from routectl.ipam.allocator import Allocator, NodeCIDRs
from routectl.ipam.cidrset import CidrSet
from routectl.ipam.model import PoolSpec

REPEATS = 7  # odd, so the median is one real run
GOAL_MS = 50  # CidrSet: occupy 5,000 + allocate 5,000, median run
EXISTING = 5000
NEW = 5000
CASES = (("ipv4", "10.0.0.0/8", 24), ("ipv6", "fd00:1234:5678::/48", 64))


def existing_blocks(cidr: str, mask: int) -> list[str]:
    """EXISTING distinct blocks at random (seeded, so every run measures the same) positions, as strings."""
    s = CidrSet(cidr, mask)
    rng = random.Random(42)
    return [str(s.block(i)) for i in rng.sample(range(s.total), EXISTING)]


Run = tuple[float, float, float]  # perf_counter at start, after occupy/rebuild, after allocate


def median_and_best(run: Callable[[], Run]) -> tuple[Run, float, float]:
    """Run REPEATS (odd) times; return the median run's (t0, t1, t2), its total and the best total, in ms."""
    runs = sorted((run() for _ in range(REPEATS)), key=lambda r: r[2] - r[0])
    median = runs[len(runs) // 2]
    return median, (median[2] - median[0]) * 1000, (runs[0][2] - runs[0][0]) * 1000


def bench_cidrset(family: str, cidr: str, mask: int) -> dict[str, object]:
    """The bitmap core alone: occupy EXISTING string blocks, then allocate NEW; figures of the median run."""
    blocks = existing_blocks(cidr, mask)
    sets: list[CidrSet] = []

    def run() -> Run:
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

    (t0, t1, t2), total_ms, best_ms = median_and_best(run)
    s = sets[-1]
    assert s.used == EXISTING + NEW
    bits_per_block = s.state_bytes * 8 / s.total
    return {
        "bench": "ipam.cidrset",
        "family": family,
        "cidr": cidr,
        "mask": mask,
        "blocks": s.total,
        "occupied": EXISTING,
        "allocated": NEW,
        "repeats": REPEATS,
        "median_total_ms": round(total_ms, 2),
        "best_total_ms": round(best_ms, 2),
        "occupy_us_per_op": round((t1 - t0) * 1e6 / EXISTING, 2),
        "allocate_us_per_op": round((t2 - t1) * 1e6 / NEW, 2),
        "us_per_op": round(total_ms * 1000 / (EXISTING + NEW), 2),
        "state_bytes": s.state_bytes,
        "state_bytes_per_block": s.state_bytes / s.total,
        "state_bits_per_block": bits_per_block,
        "goal_median_total_ms": GOAL_MS,
        "goal_met": total_ms <= GOAL_MS and bits_per_block <= 1,
    }


def bench_allocator(family: str, cidr: str, mask: int) -> dict[str, object]:
    """The whole Allocator path: rebuild from EXISTING nodes, then allocate NEW nodes (no goal; figures)."""
    blocks = existing_blocks(cidr, mask)
    spec = PoolSpec("bench", (cidr,), ipv4_mask=mask if family == "ipv4" else 24, ipv6_mask=mask)
    nodes = [NodeCIDRs(f"old-{i:05d}", (b,)) for i, b in enumerate(blocks)]
    names = [f"new-{i:05d}" for i in range(NEW)]
    done: list[Allocator] = []

    def run() -> Run:
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

    (t0, t1, t2), total_ms, best_ms = median_and_best(run)
    assert done[-1].usage("bench").allocated == EXISTING + NEW
    return {
        "bench": "ipam.allocator",
        "family": family,
        "cidr": cidr,
        "mask": mask,
        "rebuilt_nodes": EXISTING,
        "allocated_nodes": NEW,
        "repeats": REPEATS,
        "median_total_ms": round(total_ms, 2),
        "best_total_ms": round(best_ms, 2),
        "rebuild_us_per_node": round((t1 - t0) * 1e6 / EXISTING, 2),
        "allocate_us_per_node": round((t2 - t1) * 1e6 / NEW, 2),
        "us_per_op": round(total_ms * 1000 / (EXISTING + NEW), 2),
    }


def main() -> None:
    """Print the CidrSet cases, then the Allocator cases, one JSON line each."""
    for case in CASES:
        print(json.dumps(bench_cidrset(*case)), flush=True)
    for case in CASES:
        print(json.dumps(bench_allocator(*case)), flush=True)


if __name__ == "__main__":
    main()
