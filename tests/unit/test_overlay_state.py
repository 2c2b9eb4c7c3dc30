"""Desired VXLAN state from the Node list, and the diff to netlink ops (pure)."""

from __future__ import annotations

import pytest

from routectl.agent.overlay import (
    Device,
    Fdb,
    Neigh,
    Op,
    OverlayConfigError,
    OverlaySettings,
    OverlayState,
    Route,
    compute_overlay,
    diff,
    vtep_mac,
)
from routectl.constants import TRANSPORT_ANNOTATION

S = OverlaySettings()


def node(name: str, ip: str | None, *cidrs: str, overlay: bool = False, ip6: str | None = None) -> dict:
    addrs = [{"type": "Hostname", "address": name}]
    addrs += [{"type": "InternalIP", "address": a} for a in (ip, ip6) if a]
    meta: dict = {"name": name}
    if overlay:
        meta["annotations"] = {TRANSPORT_ANNOTATION: "overlay"}
    return {"metadata": meta, "spec": {"podCIDRs": list(cidrs)}, "status": {"addresses": addrs}}


A = node("a", "192.168.0.10", "10.244.0.0/24")
B = node("b", "192.168.0.11", "10.244.1.0/24")
C = node("c", "192.168.0.12", "10.244.2.0/24", overlay=True)


def test_mac_is_deterministic_local_unicast_and_distinct() -> None:
    import ipaddress
    m = vtep_mac(ipaddress.ip_address("192.168.0.12"))
    assert m == "0a:58:c0:a8:00:0c"
    assert int(m.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast
    v6 = vtep_mac(ipaddress.ip_address("fd00::1"))
    assert v6 == vtep_mac(ipaddress.ip_address("fd00::1")) != vtep_mac(ipaddress.ip_address("fd00::2"))


def test_routed_nodes_only_need_no_device() -> None:
    assert compute_overlay("a", [A, B], S) == OverlayState()


def test_routed_node_reaches_overlay_peer_only() -> None:
    st = compute_overlay("a", [A, B, C], S, underlay_mtu=9001)
    assert st.device == Device("routectl.vxlan", 1, 8472, "192.168.0.10", "0a:58:c0:a8:00:0a", 8951,
                               ("10.244.0.0/32",))
    assert st.routes == {Route("10.244.2.0/24", "10.244.2.0")}  # nothing for routed peer b
    assert st.neighs == {Neigh("10.244.2.0", "0a:58:c0:a8:00:0c")}
    assert st.fdb == {Fdb("0a:58:c0:a8:00:0c", "192.168.0.12")}
    assert st.errors == ()


def test_overlay_node_reaches_every_peer_over_vxlan() -> None:
    st = compute_overlay("c", [A, B, C], S, underlay_mtu=1500)
    assert st.device is not None and st.device.local == "192.168.0.12" and st.device.mtu == 1450
    assert st.routes == {Route("10.244.0.0/24", "10.244.0.0"), Route("10.244.1.0/24", "10.244.1.0")}
    assert {f.dst for f in st.fdb} == {"192.168.0.10", "192.168.0.11"}


def test_dual_stack_pod_cidrs_over_ipv4_underlay() -> None:
    a = node("a", "192.168.0.10", "10.244.0.0/24", "fd00:10::/64")
    c = node("c", "192.168.0.12", "10.244.2.0/24", "fd00:12::/64", overlay=True, ip6="2001:db8::12")
    st = compute_overlay("a", [a, c], S)
    assert st.device is not None and st.device.addresses == ("10.244.0.0/32", "fd00:10::/128")
    assert st.routes == {Route("10.244.2.0/24", "10.244.2.0"), Route("fd00:12::/64", "fd00:12::")}
    mac = "0a:58:c0:a8:00:0c"
    assert st.neighs == {Neigh("10.244.2.0", mac), Neigh("fd00:12::", mac)}
    assert st.fdb == {Fdb(mac, "192.168.0.12")}  # one underlay entry per peer, IPv4


def test_bad_peers_are_reported_and_skipped() -> None:
    no_ip = node("d", None, "10.244.3.0/24", overlay=True)
    bad = node("e", "192.168.0.14", "10.244.4.300/24", overlay=True)
    waiting = node("f", "192.168.0.15", overlay=True)
    st = compute_overlay("a", [A, C, no_ip, bad, waiting], S)
    assert st.routes == {Route("10.244.2.0/24", "10.244.2.0")}
    assert any("node d" in e and "InternalIP" in e for e in st.errors)
    assert any("10.244.4.300" in e for e in st.errors)
    assert st.overlay_peers == ("c",)


def test_self_without_internal_ip_is_an_error_not_a_device() -> None:
    me = node("a", None, "10.244.0.0/24")
    st = compute_overlay("a", [me, C], S)
    assert st.device is None and st.errors


@pytest.mark.parametrize("kw", [{"device": "x" * 16}, {"device": "a/b"}, {"vni": 0}, {"vni": 1 << 24},
                                {"port": 0}])
def test_settings_refuse_what_cannot_work(kw: dict) -> None:
    with pytest.raises(OverlayConfigError):
        OverlaySettings(**kw)


def test_diff_unchanged_is_empty_and_fresh_is_complete() -> None:
    st = compute_overlay("a", [A, B, C], S, underlay_mtu=1500)
    assert diff(st, st) == []
    ops = diff(st, OverlayState())
    assert [(o.action, o.kind) for o in ops] == [("add", "device"), ("add", "addr"), ("set", "up"),
                                                 ("add", "fdb"), ("add", "neigh"), ("add", "route")]


def test_diff_is_minimal_and_ordered() -> None:
    before = compute_overlay("a", [A, B, C], S, underlay_mtu=1500)
    d = node("d", "192.168.0.13", "10.244.3.0/24", overlay=True)
    after = compute_overlay("a", [A, B, d], S, underlay_mtu=1500)  # c moved back to a route, d joined
    ops = diff(after, before)
    assert [(o.action, o.kind) for o in ops] == [("add", "fdb"), ("add", "neigh"), ("add", "route"),
                                                 ("del", "route"), ("del", "neigh"), ("del", "fdb")]
    assert ops[2].item == Route("10.244.3.0/24", "10.244.3.0")
    assert ops[3].item == Route("10.244.2.0/24", "10.244.2.0")


def test_diff_replaces_changed_next_hop_and_repairs_device() -> None:
    st = compute_overlay("a", [A, B, C], S, underlay_mtu=1500)
    assert st.device is not None
    elsewhere = frozenset({Fdb("0a:58:c0:a8:00:0c", "192.168.9.9")})
    moved = OverlayState(st.device, st.routes, st.neighs, elsewhere)
    assert diff(st, moved) == [Op("replace", "fdb", Fdb("0a:58:c0:a8:00:0c", "192.168.0.12"))]
    down = OverlayState(Device(**{**st.device.__dict__, "up": False, "mtu": 1500}), st.routes, st.neighs,
                        st.fdb)
    assert [(o.action, o.kind) for o in diff(st, down)] == [("set", "mtu"), ("set", "up")]
    other_vni = OverlayState(Device(**{**st.device.__dict__, "vni": 7}), st.routes, st.neighs, st.fdb)
    ops = diff(st, other_vni)
    assert ops[0] == Op("del", "device", "routectl.vxlan") and ops[1] == Op("add", "device", st.device)
    assert {o.kind for o in ops if o.action == "add"} == {"device", "addr", "fdb", "neigh", "route"}


def test_diff_removes_device_when_nothing_needs_it() -> None:
    st = compute_overlay("a", [A, B, C], S)
    assert diff(compute_overlay("a", [A, B], S), st) == [Op("del", "device", "routectl.vxlan")]
    assert diff(OverlayState(), OverlayState()) == []


def test_five_thousand_nodes_one_fifth_overlay() -> None:
    nodes = [node(f"n{i}", f"10.1.{i // 256}.{i % 256}", f"100.{64 + i // 256}.{i % 256}.0/24",
                  overlay=i % 5 == 0) for i in range(5000)]
    st = compute_overlay("n1", nodes, S)
    assert len(st.routes) == len(st.fdb) == len(st.neighs) == 1000
    assert len(compute_overlay("n0", nodes, S).routes) == 4999


def test_pods_mtu_leaves_room_for_vxlan_when_the_pool_may_fall_back() -> None:
    from routectl.agent.overlay import overlay_fallback_for

    def pool(fallback: str | None) -> dict:
        spec: dict = {"cidrs": ["10.244.0.0/16"]}
        if fallback:
            spec["routeLimitFallback"] = fallback
        return {"kind": "PodCIDRPool", "metadata": {"name": "p"}, "spec": spec}

    other = {"kind": "PodCIDRPool", "metadata": {"name": "o"},
             "spec": {"cidrs": ["10.99.0.0/16"], "routeLimitFallback": "Overlay"}}
    assert overlay_fallback_for(A, [pool("Overlay")])
    assert not overlay_fallback_for(A, [pool(None)])
    assert not overlay_fallback_for(A, [pool("None"), other])  # another pool's switch is not ours
    assert overlay_fallback_for(C, [pool(None)])  # already on the overlay (annotation): always
