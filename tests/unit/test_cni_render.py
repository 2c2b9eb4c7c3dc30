"""Unit tests of the CNI conflist rendering (pure): single and dual-stack, MTU rules, stable output."""

from __future__ import annotations

import ipaddress
import json

import pytest

from routectl.agent import cni

N = ipaddress.ip_network
V4 = N("10.244.1.0/24")
V6 = N("fd00:10:244:1::/64")


def test_single_stack_is_bridge_host_local_portmap_at_spec_1_0_0():
    conf = json.loads(cni.render_conflist([V4], 1460))
    assert conf["cniVersion"] == "1.0.0" and conf["name"] == "routectl"
    bridge, portmap = conf["plugins"]
    assert bridge == {
        "type": "bridge", "bridge": "routectl0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
        "mtu": 1460,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}}


def test_dual_stack_has_one_range_and_one_default_route_per_family_in_the_nodes_order():
    conf = json.loads(cni.render_conflist([V6, V4], 1500))
    ipam = conf["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": "fd00:10:244:1::/64"}], [{"subnet": "10.244.1.0/24"}]]
    assert ipam["routes"] == [{"dst": "::/0"}, {"dst": "0.0.0.0/0"}]


def test_settings_name_the_bridge_network_and_lease_directory():
    settings = cni.CniSettings(network_name="pods", bridge="br-pods", ipam_data_dir="/tmp/leases")
    conf = json.loads(cni.render_conflist([V4], 1500, settings))
    assert conf["name"] == "pods" and conf["plugins"][0]["bridge"] == "br-pods"
    assert conf["plugins"][0]["ipam"]["dataDir"] == "/tmp/leases"
    assert "dataDir" not in json.loads(cni.render_conflist([V4], 1500))["plugins"][0]["ipam"]


def test_output_is_deterministic_text():
    a = cni.render_conflist([V4, V6], 1500)
    b = cni.render_conflist([N("10.244.1.0/24"), N("fd00:10:244:1::/64")], 1500)
    assert a == b and a.endswith("}\n") and "\n  " in a
    assert cni.render_conflist([V4], 1500) != cni.render_conflist([V4], 1499)


@pytest.mark.parametrize(("link", "explicit", "overlay", "want"), [
    (1500, None, False, 1500),   # default: the primary interface's MTU
    (1460, None, False, 1460),   # GCE's
    (9001, None, True, 8951),    # overlay fallback: minus the VXLAN overhead
    (1500, None, True, 1450),
    (1500, 1400, False, 1400),   # the flag wins, as given
    (1500, 1400, True, 1400),
    (None, 1400, False, 1400),   # no default route needed with the flag
])
def test_pod_mtu_rules(link, explicit, overlay, want):
    assert cni.pod_mtu(link, explicit=explicit, overlay=overlay) == want


def test_pod_mtu_without_a_primary_interface_asks_for_the_flag():
    with pytest.raises(cni.CniConfigError, match="--cni-mtu"):
        cni.pod_mtu(None)


def test_ipv6_needs_at_least_1280_and_ipv4_at_least_576():
    cni.render_conflist([V4], 576)
    with pytest.raises(cni.CniConfigError, match="1280"):
        cni.render_conflist([V4, V6], 1279)
    with pytest.raises(cni.CniConfigError, match="576"):
        cni.render_conflist([V4], 575)
    with pytest.raises(cni.CniConfigError, match="65535"):
        cni.render_conflist([V4], 65536)


@pytest.mark.parametrize(("cidrs", "match"), [
    ([], "no podCIDR"),
    ([V4, N("10.244.2.0/24")], "more than one IPv4"),
    ([N("10.244.1.0/31")], "too small"),
])
def test_pod_cidrs_the_plugins_cannot_serve_are_refused(cidrs, match):
    with pytest.raises(cni.CniConfigError, match=match):
        cni.render_conflist(cidrs, 1500)


@pytest.mark.parametrize("bridge", ["", "a" * 16, "has space", "a/b", ".."])
def test_bad_bridge_names_are_refused(bridge):
    with pytest.raises(cni.CniConfigError, match="interface name"):
        cni.CniSettings(bridge=bridge)


@pytest.mark.parametrize("name", ["10-routectl.conf", "a/b.conflist", ".hidden.conflist", ".conflist"])
def test_conf_file_must_be_a_plain_conflist_name(name):
    with pytest.raises(cni.CniConfigError, match=r"ending in \.conflist"):
        cni.validate_conf_file(name)


def test_required_plugins_include_ipam_and_loopback():
    conf = cni.build_conflist([V4], 1500)
    assert cni.plugin_types(conf) == ["bridge", "host-local", "portmap", "loopback"]
    found = {"/opt/cni/bin": ["bridge", "portmap"], "/usr/lib/cni": ["host-local"]}
    assert cni.missing_plugins(cni.plugin_types(conf), found) == ["loopback"]
    assert cni.missing_plugins(cni.plugin_types(conf), {}) == ["bridge", "host-local", "portmap", "loopback"]


def test_configs_sorting_before_ours_are_named():
    names = ["05-other.conf", "10-routectl.conflist", "99-late.conflist", ".hidden.conf", "01-notes.txt"]
    assert cni.shadowing_configs(names, "10-routectl.conflist") == ["05-other.conf"]


PROC_ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t00000000\t010200C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
ens4\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
"""
Z = "0" * 32
PROC_ROUTE6 = f"""fd000000000000000000000000000000 40 {Z} 00 {Z} 00000100 00000001 00000000 00000001     eth0
{Z} 00 {Z} 00 {Z} ffffffff 00000001 00000000 00200200       lo
{Z} 00 {Z} 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
"""


def test_primary_interface_from_proc_net():
    assert cni.parse_default_dev_v4(PROC_ROUTE) == "ens4", "the lowest-metric default route wins"
    assert cni.parse_default_dev_v4(PROC_ROUTE.splitlines()[0] + "\n") is None
    assert cni.parse_default_dev_v6(PROC_ROUTE6) == "eth0", "not the kernel's unreachable default on lo"
    assert cni.parse_default_dev_v6("") is None
    assert cni.parse_mtu("1460\n") == 1460 and cni.parse_mtu("") is None and cni.parse_mtu("x") is None
