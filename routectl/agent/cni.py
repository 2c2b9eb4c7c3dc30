"""The node's CNI network configuration as data: render the `.conflist` from the Node's pod CIDRs.

Pure functions only (no I/O), so the exact file the agent writes is unit-tested. The chain is the one
kubenet used and containerd's `conf_template` users write by hand: `bridge` (own bridge, the node is
the pods' gateway, no masquerade: egress NAT stays the agent's iptables job) with `host-local` IPAM
(one range per family, a default route per family), then `portmap` for hostPort. CNI spec 1.0.0.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CNI_VERSION = "1.0.0"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CONF_FILE = "10-routectl.conflist"
DEFAULT_NETWORK_NAME = "routectl"
DEFAULT_BRIDGE = "routectl0"
# containerd's and CRI-O's default plugin directory, and where Debian's containernetworking-plugins puts them.
DEFAULT_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
# Extensions libcni loads from the config directory (the first file in lexical order wins).
CONFIG_EXTENSIONS = (".conf", ".conflist", ".json")
# VXLAN over IPv4: outer Ethernet-less IP (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
VXLAN_OVERHEAD = 50
MIN_MTU = {4: 576, 6: 1280}  # IPv4's minimum datagram every host accepts; IPv6's minimum link MTU
MAX_MTU = 65535
_DEFAULT_ROUTE = {4: "0.0.0.0/0", 6: "::/0"}
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # libcni's rule for network names


class CniConfigError(ValueError):
    """Inputs that cannot become a working CNI config (bad pod CIDRs, MTU, names); says what to fix."""


@dataclass(frozen=True)
class CniSettings:
    """Node-independent knobs of the conflist (from the agent's flags)."""

    network_name: str = DEFAULT_NETWORK_NAME
    bridge: str = DEFAULT_BRIDGE
    ipam_data_dir: str | None = None  # host-local's default (/var/lib/cni/networks) when None

    def __post_init__(self) -> None:
        if not _IFNAME.match(self.bridge) or self.bridge in (".", ".."):
            raise CniConfigError(f"bridge name {self.bridge!r} is not a Linux interface name "
                                 "(1-15 characters of letters, digits, '_', '.', '-')")
        if not _NETWORK_NAME.match(self.network_name):
            raise CniConfigError(f"CNI network name {self.network_name!r} must start with a letter or digit "
                                 "and contain only letters, digits, '_', '.', '-'")


def validate_conf_file(name: str) -> str:
    """`name` if it is a plain file name libcni loads as a network list (`*.conflist`), else an error."""
    if "/" in name or name.startswith(".") or not name.endswith(".conflist") or name == ".conflist":
        raise CniConfigError(f"CNI config file name {name!r} must be a plain file name ending in .conflist")
    return name


def pod_mtu(link_mtu: int | None, *, explicit: int | None = None, overlay: bool = False) -> int:
    """The pods' MTU: `explicit` (the flag) as given; else the node's primary interface MTU, minus the
    VXLAN overhead when the node's traffic may be encapsulated (overlay fallback enabled)."""
    if explicit is not None:
        return explicit
    if link_mtu is None:
        raise CniConfigError("cannot tell the node's primary interface MTU (no default route); "
                             "set --cni-mtu")
    return link_mtu - (VXLAN_OVERHEAD if overlay else 0)


def check_pod_cidrs(pod_cidrs: Sequence[IPNetwork]) -> None:
    """At most one CIDR per family, each with room for the gateway and at least one pod."""
    if not pod_cidrs:
        raise CniConfigError("the node has no podCIDR yet")
    seen: set[int] = set()
    for net in pod_cidrs:
        if net.version in seen:
            listed = ", ".join(map(str, pod_cidrs))
            raise CniConfigError(f"more than one IPv{net.version} podCIDR ({listed}); "
                                 "host-local takes one range per family")
        seen.add(net.version)
        if net.num_addresses < 4:
            raise CniConfigError(f"podCIDR {net} is too small for a gateway and a pod")


def check_mtu(mtu: int, families: Sequence[int]) -> None:
    """MTU within what every family of the node needs (IPv6 needs at least 1280)."""
    low = max(MIN_MTU[f] for f in families)
    if not low <= mtu <= MAX_MTU:
        fams = "/".join(f"IPv{f}" for f in sorted(set(families)))
        raise CniConfigError(f"pod MTU {mtu} is outside {low}..{MAX_MTU} for {fams}")


def build_conflist(pod_cidrs: Sequence[IPNetwork], mtu: int, settings: CniSettings | None = None
                   ) -> dict[str, object]:
    """The conflist as a dict: bridge + host-local (ranges, default routes in the Node's order), portmap."""
    settings = settings or CniSettings()
    check_pod_cidrs(pod_cidrs)
    check_mtu(mtu, [n.version for n in pod_cidrs])
    ipam: dict[str, object] = {
        "type": "host-local",
        "ranges": [[{"subnet": str(net)}] for net in pod_cidrs],
        "routes": [{"dst": _DEFAULT_ROUTE[net.version]} for net in pod_cidrs],
    }
    if settings.ipam_data_dir:
        ipam["dataDir"] = settings.ipam_data_dir
    bridge = {
        "type": "bridge",
        "bridge": settings.bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,  # a pod reaches itself through its Service; also turns IPv6 DAD off in the pod
        "mtu": mtu,
        "ipam": ipam,
    }
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    return {"cniVersion": CNI_VERSION, "name": settings.network_name, "plugins": [bridge, portmap]}


def render_conflist(pod_cidrs: Sequence[IPNetwork], mtu: int, settings: CniSettings | None = None) -> str:
    """The exact file content: stable JSON (same inputs, same bytes), newline-terminated."""
    return to_text(build_conflist(pod_cidrs, mtu, settings))


def to_text(conflist: dict[str, object]) -> str:
    """A built conflist as file content (key order as built, two-space indent, final newline)."""
    return json.dumps(conflist, indent=2) + "\n"


def plugin_types(conflist: dict[str, object]) -> list[str]:
    """Plugin binaries a conflist needs (chain order, IPAM after its plugin), plus loopback for the
    runtime's own `lo` setup."""
    types: list[str] = []
    plugins = conflist.get("plugins")
    for plugin in plugins if isinstance(plugins, list) else []:
        ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
        for obj in (plugin, ipam):
            if isinstance(obj, dict) and obj.get("type") and str(obj["type"]) not in types:
                types.append(str(obj["type"]))
    return types if "loopback" in types else [*types, "loopback"]


def missing_plugins(required: Sequence[str], found: dict[str, Sequence[str]]) -> list[str]:
    """Required plugin types that none of the directories holds (`found`: dir -> executable names)."""
    return [p for p in required if not any(p in names for names in found.values())]


def shadowing_configs(names: Sequence[str], ours: str) -> list[str]:
    """Config files that sort before ours: libcni takes the first one, so ours would be ignored."""
    return sorted(n for n in names if n.endswith(CONFIG_EXTENSIONS) and not n.startswith(".") and n < ours)


_RTF_UP = 0x1
_RTF_REJECT = 0x200


def parse_default_dev_v4(proc_net_route: str) -> str | None:
    """The device of the IPv4 default route with the lowest metric, from /proc/net/route."""
    best: tuple[int, str] | None = None
    for line in proc_net_route.splitlines()[1:]:
        f = line.split()
        if len(f) < 8 or f[1] != "00000000" or f[7] != "00000000":
            continue
        try:
            flags, metric = int(f[3], 16), int(f[6])
        except ValueError:
            continue
        if flags & _RTF_UP and not flags & _RTF_REJECT and (best is None or metric < best[0]):
            best = (metric, f[0])
    return best[1] if best else None


def parse_default_dev_v6(proc_net_ipv6_route: str) -> str | None:
    """The device of the IPv6 default route with the lowest metric, from /proc/net/ipv6_route
    (the kernel's unreachable defaults on `lo` are left out)."""
    best: tuple[int, str] | None = None
    for line in proc_net_ipv6_route.splitlines():
        f = line.split()
        if len(f) < 10 or f[0] != "0" * 32 or f[1] != "00" or f[9] == "lo":
            continue
        try:
            metric, flags = int(f[5], 16), int(f[8], 16)
        except ValueError:
            continue
        if flags & _RTF_UP and not flags & _RTF_REJECT and (best is None or metric < best[0]):
            best = (metric, f[9])
    return best[1] if best else None


def parse_mtu(sysfs_mtu: str) -> int | None:
    """The number in /sys/class/net/<dev>/mtu."""
    text = sysfs_mtu.strip()
    return int(text) if text.isdigit() else None
