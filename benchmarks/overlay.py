"""Agent overlay sync with 1,000 peer nodes of which 200 are on the overlay, in a throwaway netns.

Prints JSON lines: first apply (device + 200 FDB, 200 neighbour and 200 route entries), an unchanged
sync (netlink dumps only) and its writes (goal 0), and a repair after one route was removed.
Needs root (network namespaces). Run: `.venv/bin/python benchmarks/overlay.py`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time

from routectl.agent.overlay import OverlaySettings, compute_overlay
from routectl.agent.vxlan import VxlanSyncer
from routectl.constants import TRANSPORT_ANNOTATION

PEERS, OVERLAY = 1000, 200


def nodes() -> list[dict]:
    out = []
    for i in range(PEERS + 1):
        meta: dict = {"name": f"n{i}"}
        if i and i % (PEERS // OVERLAY) == 0:
            meta["annotations"] = {TRANSPORT_ANNOTATION: "overlay"}
        out.append({"metadata": meta, "spec": {"podCIDRs": [f"10.{64 + i // 256}.{i % 256}.0/24"]},
                    "status": {"addresses": [{"type": "InternalIP",
                                              "address": f"192.168.{i // 250}.{i % 250 + 2}"}]}})
    return out


def main() -> None:
    ns = f"rvx-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = ["ip", "-n", ns]
        subprocess.run([*ip, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
        subprocess.run([*ip, "addr", "add", "192.168.0.1/16", "dev", "eth0"], check=True)
        subprocess.run([*ip, "link", "set", "eth0", "up"], check=True)
        all_nodes = nodes()
        t0 = time.perf_counter()
        desired = compute_overlay("n0", all_nodes, OverlaySettings(), underlay_mtu=1500)
        compute = time.perf_counter() - t0
        syncer = VxlanSyncer("routectl.vxlan", netns=ns)
        t0 = time.perf_counter()
        first = syncer.sync(desired)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = syncer.sync(compute_overlay("n0", all_nodes, OverlaySettings(), underlay_mtu=1500))
        again_s = time.perf_counter() - t0
        subprocess.run([*ip, "route", "del", "10.64.5.0/24"], check=True)
        t0 = time.perf_counter()
        repair = syncer.sync(desired)
        repair_s = time.perf_counter() - t0
        for name, value in (("compute_desired_s", compute), ("first_apply_s", first_s),
                            ("unchanged_sync_s", again_s), ("repair_one_route_s", repair_s)):
            print(json.dumps({"bench": "overlay", "metric": name, "value": round(value, 4),
                              "peers": PEERS, "overlay_peers": OVERLAY}))
        for name, value in (("first_apply_writes", first.writes), ("unchanged_sync_writes", again.writes),
                            ("repair_writes", repair.writes)):
            print(json.dumps({"bench": "overlay", "metric": name, "value": value,
                              "peers": PEERS, "overlay_peers": OVERLAY}))
        assert not first.errors and not again.errors and not repair.errors
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
