"""The agent's VXLAN apply code (pyroute2) against a real kernel, inside throwaway network namespaces."""

from __future__ import annotations

import pytest

from routectl.agent.overlay import OverlaySettings, compute_overlay
from routectl.agent.vxlan import OverlayError, VxlanSyncer
from routectl.constants import TRANSPORT_ANNOTATION
from tests.dataplane.netns import Netns, NetnsFactory

pytestmark = pytest.mark.dataplane

DEV = "routectl.vxlan"


def node(name: str, ip: str, *cidrs: str, overlay: bool = False) -> dict:
    meta: dict = {"name": name, **({"annotations": {TRANSPORT_ANNOTATION: "overlay"}} if overlay else {})}
    return {"metadata": meta, "spec": {"podCIDRs": list(cidrs)},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


A = node("a", "192.168.0.10", "10.244.0.0/24", "fd00:10::/64")
B = node("b", "192.168.0.11", "10.244.1.0/24", "fd00:11::/64")
C = node("c", "192.168.0.12", "10.244.2.0/24", "fd00:12::/64", overlay=True)
D = node("d", "192.168.0.13", "10.244.3.0/24", overlay=True)


def host(netns: NetnsFactory) -> Netns:
    ns = netns("a")
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ns.ip("addr", "add", "192.168.0.10/24", "dev", "eth0")
    ns.ip("link", "set", "eth0", "up")
    ns.ip("link", "set", "eth1", "up")
    return ns


def test_apply_is_idempotent_repairs_and_cleans_up(netns: NetnsFactory) -> None:
    ns = host(netns)
    syncer = VxlanSyncer(DEV, netns=ns.name)
    desired = compute_overlay("a", [A, B, C], OverlaySettings(), underlay_mtu=1500)
    first = syncer.sync(desired)
    assert first.errors == () and first.writes == 9  # device, 2 addrs, up, fdb, 2 neigh, 2 routes
    assert syncer.read() == desired
    detail = ns.ip("-d", "link", "show", DEV).stdout
    assert "vxlan id 1 local 192.168.0.10" in detail and "dstport 8472 nolearning" in detail
    assert "mtu 1450" in detail and "0a:58:c0:a8:00:0a" in detail
    assert "10.244.2.0/24 via 10.244.2.0 dev routectl.vxlan" in ns.ip("route").stdout
    assert "onlink" in ns.ip("route").stdout
    assert "fd00:12::/64 via fd00:12:: dev routectl.vxlan" in ns.ip("-6", "route").stdout
    assert "0a:58:c0:a8:00:0c dst 192.168.0.12" in ns.run("bridge", "fdb", "show", "dev", DEV).stdout
    assert "10.244.1.0" not in ns.ip("route").stdout  # routed peer b: never via the device

    assert syncer.sync(desired).writes == 0  # unchanged sync: zero netlink writes

    # someone removes a route, a neighbour and the FDB entry, and changes the MTU: exactly those come back
    ns.ip("route", "del", "10.244.2.0/24")
    ns.ip("neigh", "del", "fd00:12::", "dev", DEV)
    ns.run("bridge", "fdb", "del", "0a:58:c0:a8:00:0c", "dev", DEV, "dst", "192.168.0.12")
    ns.ip("link", "set", DEV, "mtu", "1400")
    assert syncer.sync(desired).writes == 4
    assert syncer.read() == desired

    # c moves back to a route, d joins the overlay: only c's entries go, only d's come
    moved = compute_overlay("a", [A, B, {**C, "metadata": {"name": "c"}}, D], OverlaySettings(),
                            underlay_mtu=1500)
    assert syncer.sync(moved).writes == 8  # d: +fdb +neigh +route; c: -2 routes -2 neighs -fdb
    state = syncer.read()
    assert state == moved and {r.dst for r in state.routes} == {"10.244.3.0/24"}

    # a foreign route on another device is never touched; cleanup removes the device and only it
    ns.ip("route", "add", "10.99.0.0/16", "dev", "eth0")
    assert syncer.cleanup() is True
    assert DEV not in ns.ip("link").stdout and "10.99.0.0/16 dev eth0" in ns.ip("route").stdout
    assert syncer.cleanup() is False


def test_nothing_to_do_means_no_device_and_a_foreign_device_is_left_alone(netns: NetnsFactory) -> None:
    ns = host(netns)
    syncer = VxlanSyncer(DEV, netns=ns.name)
    assert syncer.sync(compute_overlay("a", [A, B], OverlaySettings())).writes == 0
    assert DEV not in ns.ip("link").stdout
    ns.ip("link", "add", DEV, "type", "veth", "peer", "name", "other")
    result = syncer.sync(compute_overlay("a", [A, C], OverlaySettings()))
    assert result.writes == 0 and any("not a VXLAN device" in e for e in result.errors)
    with pytest.raises(OverlayError):
        syncer.cleanup()
    assert DEV in ns.ip("link").stdout
