"""Benchmark the agent: render + apply time with 64 non-masquerade CIDRs, writes over 100 unchanged syncs;
and the CNI config: render time, first write, file writes over 100 unchanged syncs (goal 0).

Runs the real apply code against real iptables inside a throwaway network namespace (root needed; the
namespace is always deleted). Prints one JSON line per iptables backend, and one for the CNI config
(written in a temp directory, MTU read from the namespace's primary interface).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from routectl.agent import cni, rules
from routectl.agent.cnisync import CniSyncer
from routectl.agent.iptables import Iptables, Runner
from routectl.agent.sync import MasqSyncer, compute_desired

NON_MASQ = [f"172.{16 + i // 4}.{(i % 4) * 64}.0/18" for i in range(64)]
NODE = {"metadata": {"name": "bench"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}}
DUAL_NODE = {"metadata": {"name": "bench"}, "spec": {"podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]}}
POOL = {"kind": "PodCIDRPool", "metadata": {"name": "bench"},
        "spec": {"cidrs": ["10.244.0.0/16"], "masquerade": {"nonMasqueradeCIDRs": NON_MASQ}}}
UNCHANGED_SYNCS = 100


def bench_backend(backend: str) -> dict[str, object]:
    """Figures for one backend in a fresh namespace."""
    ns = f"rctl-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        t0 = time.perf_counter()
        desired = compute_desired(NODE, [POOL])
        text = rules.render_restore(desired.specs[4], rules.InstalledChain())
        render_ms = (time.perf_counter() - t0) * 1000
        ipt = Iptables(runner=Runner(("ip", "netns", "exec", ns)), backend=backend)
        syncer = MasqSyncer(ipt)
        t0 = time.perf_counter()
        first = syncer.sync(desired)
        apply_ms = (time.perf_counter() - t0) * 1000
        durations = []
        writes = 0
        for _ in range(UNCHANGED_SYNCS):
            t0 = time.perf_counter()
            writes += syncer.sync(compute_desired(NODE, [POOL])).writes
            durations.append((time.perf_counter() - t0) * 1000)
        return {
            "benchmark": "agent", "backend": backend, "non_masquerade_cidrs": len(NON_MASQ),
            "chain_rules": len(rules.chain_rules(desired.specs[4])), "restore_bytes": len(text),
            "render_ms": round(render_ms, 3), "first_sync_apply_ms": round(apply_ms, 1),
            "first_sync_writes": first.writes, "unchanged_syncs": UNCHANGED_SYNCS,
            "writes_over_unchanged_syncs": writes,
            "unchanged_sync_ms_median": round(statistics.median(durations), 1),
            "unchanged_sync_ms_p95": round(sorted(durations)[int(0.95 * len(durations)) - 1], 1),
        }
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def bench_cni() -> dict[str, object]:
    """CNI config figures: pure render, first sync (MTU read + atomic write), unchanged syncs."""
    ns = f"rctl-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        prefix = ("ip", "-n", ns)
        subprocess.run([*prefix, "link", "add", "eth0", "mtu", "1460", "type", "veth", "peer", "name",
                        "eth0p"], check=True)
        for dev in ("eth0", "eth0p"):
            subprocess.run([*prefix, "link", "set", dev, "up"], check=True)
        subprocess.run([*prefix, "addr", "add", "10.0.0.10/24", "dev", "eth0"], check=True)
        subprocess.run([*prefix, "route", "add", "default", "via", "10.0.0.1"], check=True)
        nets = [cni.ipaddress.ip_network(c) for c in DUAL_NODE["spec"]["podCIDRs"]]
        t0 = time.perf_counter()
        for _ in range(1000):
            cni.render_conflist(nets, 1460)
        render_us = (time.perf_counter() - t0) * 1e6 / 1000  # per render
        with tempfile.TemporaryDirectory() as tmp:
            bins = Path(tmp, "bin")
            bins.mkdir()
            for name in ("bridge", "host-local", "portmap", "loopback"):
                (bins / name).write_text("#!/bin/sh\n")
                (bins / name).chmod(0o755)
            syncer = CniSyncer(conf_dir=tmp, bin_dirs=[str(bins)], runner=Runner(("ip", "netns", "exec", ns)))
            t0 = time.perf_counter()
            first = syncer.sync(DUAL_NODE)
            first_ms = (time.perf_counter() - t0) * 1000
            durations = []
            for _ in range(UNCHANGED_SYNCS):
                t0 = time.perf_counter()
                syncer.sync(DUAL_NODE)
                durations.append((time.perf_counter() - t0) * 1000)
            mtu = cni.json.loads(syncer.path.read_text())["plugins"][0]["mtu"]
        return {
            "benchmark": "agent-cni", "pod_cidrs": len(nets), "mtu_read": mtu,
            "render_us": round(render_us, 1), "first_sync_ms": round(first_ms, 1),
            "first_sync_written": first.written, "unchanged_syncs": UNCHANGED_SYNCS,
            "writes_over_unchanged_syncs": syncer.writes - 1,
            "unchanged_sync_ms_median": round(statistics.median(durations), 2),
            "unchanged_sync_ms_p95": round(sorted(durations)[int(0.95 * len(durations)) - 1], 2),
        }
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> int:
    """Run for each installed backend; explain and exit 0 (nothing measured) when not root."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print(json.dumps({"benchmark": "agent", "skipped": "needs root and iproute2 (network namespace)"}))
        return 0
    for backend in ("nft", "legacy"):
        if shutil.which(f"iptables-{backend}-restore"):
            print(json.dumps(bench_backend(backend)), flush=True)
    print(json.dumps(bench_cni()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
