"""Desired VXLAN state for the per-node overlay fallback, and the diff that turns it into netlink ops.

Pure: Node objects (plain dicts) in, an `OverlayState` out; `diff(desired, actual)` gives the minimal
list of `Op`s. The netlink side lives in routectl/agent/vxlan.py.

Layout, as flannel's VXLAN backend: one device per node (`nolearning`, local = the node's InternalIP),
a MAC derived from the node's underlay IP so nobody has to publish it, and per peer P that needs the
overlay: a route `P.podCIDR via VTEP(P) dev <vxlan> onlink`, a permanent neighbour VTEP(P) → MAC(P) and
an FDB entry MAC(P) → P's InternalIP. VTEP(P) is the network address of P's podCIDR (one per family, so
IPv6 pod CIDRs ride an IPv4 underlay too). A peer needs the overlay when it is an overlay node or when
this node is one; routed ↔ routed traffic never touches the device.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routectl.agent.cni import VXLAN_OVERHEAD
from routectl.agent.sync import IPNetwork, node_pod_cidrs
from routectl.constants import TRANSPORT_ANNOTATION, TRANSPORT_OVERLAY
from routectl.ipam.errors import InvalidCIDRError, PoolSpecError
from routectl.ipam.model import PoolSpec

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DEVICE = "routectl.vxlan"
DEFAULT_VNI = 1
DEFAULT_PORT = 8472  # the Linux kernel's VXLAN default, flannel's too
MAX_IFNAME = 15  # IFNAMSIZ - 1


class OverlayConfigError(ValueError):
    """Overlay settings that cannot work (bad device name, VNI or port)."""


@dataclass(frozen=True)
class OverlaySettings:
    """Device name, VNI and UDP port of the node's VXLAN device (the same on every node)."""

    device: str = DEFAULT_DEVICE
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if not self.device or len(self.device) > MAX_IFNAME or any(c in self.device for c in "/: \t\n"):
            raise OverlayConfigError(f"VXLAN device name {self.device!r} must be 1..{MAX_IFNAME} characters "
                                     "without '/', ':' or spaces")
        if not 1 <= self.vni <= 0xFFFFFF:
            raise OverlayConfigError(f"VXLAN VNI {self.vni} must be in 1..16777215")
        if not 1 <= self.port <= 65535:
            raise OverlayConfigError(f"VXLAN UDP port {self.port} must be in 1..65535")


@dataclass(frozen=True)
class Device:
    """The VXLAN device: what `ip link add ... type vxlan` is given, plus its MTU and VTEP addresses."""

    name: str
    vni: int
    port: int
    local: str
    mac: str
    mtu: int | None  # None: leave the kernel's choice (underlay MTU unknown)
    addresses: tuple[str, ...] = ()  # own VTEP addresses as "ip/prefixlen" (host routes: /32, /128)
    up: bool = True


@dataclass(frozen=True, order=True)
class Route:
    """`dst via gateway dev <vxlan> onlink`."""

    dst: str
    gateway: str


@dataclass(frozen=True, order=True)
class Neigh:
    """Permanent neighbour on the device: a peer's VTEP IP → its MAC."""

    ip: str
    mac: str


@dataclass(frozen=True, order=True)
class Fdb:
    """Permanent FDB entry on the device: a peer's MAC → its node (underlay) IP."""

    mac: str
    dst: str


@dataclass(frozen=True)
class OverlayState:
    """The whole VXLAN state of one node. `device` None means no device at all (nothing needs it)."""

    device: Device | None = None
    routes: frozenset[Route] = frozenset()
    neighs: frozenset[Neigh] = frozenset()
    fdb: frozenset[Fdb] = frozenset()
    errors: tuple[str, ...] = ()
    overlay_peers: tuple[str, ...] = field(default=(), compare=False)  # names, for logs and Events


@dataclass(frozen=True, order=True)
class Op:
    """One netlink write: `action` add/del/set on `kind` (device, mtu, up, addr, route, neigh, fdb)."""

    action: str
    kind: str
    item: Device | Route | Neigh | Fdb | str


def is_overlay(node: Mapping[str, Any]) -> bool:
    """Whether the controller marked `node` for overlay transport."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    return annotations.get(TRANSPORT_ANNOTATION) == TRANSPORT_OVERLAY


def internal_ip(node: Mapping[str, Any], family: int | None = None) -> IPAddress | None:
    """The Node's first InternalIP (of `family` if given; IPv4 preferred otherwise), or None."""
    found: list[IPAddress] = []
    for addr in (node.get("status") or {}).get("addresses") or []:
        if not isinstance(addr, Mapping) or addr.get("type") != "InternalIP":
            continue
        try:
            found.append(ipaddress.ip_address(str(addr.get("address"))))
        except ValueError:
            continue
    if family is not None:
        return next((a for a in found if a.version == family), None)
    return next((a for a in found if a.version == 4), found[0] if found else None)


def vtep_mac(node_ip: IPAddress) -> str:
    """Deterministic, locally administered unicast MAC for a node's VTEP, derived from its underlay IP.

    IPv4: 0a:58 + the four address bytes (collision-free). IPv6: 0a:59 + four bytes of SHA-256 of it.
    """
    tail = node_ip.packed if node_ip.version == 4 else hashlib.sha256(node_ip.packed).digest()[:4]
    head = b"\x0a\x58" if node_ip.version == 4 else b"\x0a\x59"
    return ":".join(f"{b:02x}" for b in head + tail)


def vtep_ip(pod_cidr: IPNetwork) -> IPAddress:
    """A node's VTEP address in one family: the network address of its podCIDR (never a pod's, since
    host-local starts at .1 and the bridge gateway takes the first)."""
    return pod_cidr.network_address


def overlay_mtu(underlay_mtu: int | None) -> int | None:
    """MTU of the VXLAN device (and of pods on overlay-capable nodes): the underlay's minus 50 bytes."""
    return None if underlay_mtu is None else underlay_mtu - VXLAN_OVERHEAD


def _name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name", "?"))


def compute_overlay(self_name: str, nodes: Iterable[Mapping[str, Any]], settings: OverlaySettings,
                    *, underlay_mtu: int | None = None) -> OverlayState:
    """The desired VXLAN state of node `self_name` given every Node of the cluster.

    Peers without an InternalIP of this node's underlay family, or without a valid podCIDR, are skipped
    and reported in `errors` (their traffic cannot be encapsulated); O(N) in the number of Nodes.
    """
    all_nodes = list(nodes)
    me = next((n for n in all_nodes if _name(n) == self_name), None)
    if me is None:
        return OverlayState(errors=(f"node {self_name} not found in the Node list",))
    self_overlay = is_overlay(me)
    local = internal_ip(me)
    peers = [n for n in all_nodes if _name(n) != self_name and (self_overlay or is_overlay(n))]
    if not peers:
        return OverlayState()
    if local is None:
        return OverlayState(errors=(f"node {self_name} has no InternalIP: no VXLAN device for "
                                    f"{len(peers)} overlay peer(s)",))
    errors: list[str] = []
    routes: set[Route] = set()
    neighs: set[Neigh] = set()
    fdb: set[Fdb] = set()
    names: list[str] = []
    for peer in peers:
        cidrs, bad = node_pod_cidrs(peer)
        errors.extend(bad)
        if not cidrs:
            continue  # no block yet: nothing to route; it appears at the sync after it gets one
        peer_ip = internal_ip(peer, local.version)
        if peer_ip is None:
            errors.append(f"node {_name(peer)}: no IPv{local.version} InternalIP; its pods are not "
                          "reachable over the overlay")
            continue
        mac = vtep_mac(peer_ip)
        names.append(_name(peer))
        fdb.add(Fdb(mac, str(peer_ip)))
        for cidr in cidrs:
            gw = str(vtep_ip(cidr))
            routes.add(Route(str(cidr), gw))
            neighs.add(Neigh(gw, mac))
    own_cidrs, bad = node_pod_cidrs(me)
    errors.extend(bad)
    addresses = tuple(f"{vtep_ip(c)}/{c.max_prefixlen}" for c in own_cidrs)
    device = Device(settings.device, settings.vni, settings.port, str(local), vtep_mac(local),
                    overlay_mtu(underlay_mtu), addresses)
    return OverlayState(device, frozenset(routes), frozenset(neighs), frozenset(fdb), tuple(errors),
                        tuple(sorted(names)))


def same_link(a: Device, b: Device) -> bool:
    """Whether `b` can become `a` without recreating it (VNI, port, local and MAC fixed at creation)."""
    return (a.name, a.vni, a.port, a.local, a.mac) == (b.name, b.vni, b.port, b.local, b.mac)


def _keyed(kind: str, want: frozenset[Any], have: frozenset[Any], key: str) -> tuple[list[Op], list[Op]]:
    """(adds and replaces, deletes) for entries identified by attribute `key` (a route by its
    destination, a neighbour by its IP, an FDB entry by its MAC): a changed value is one replace."""
    w = {getattr(x, key): x for x in want}
    h = {getattr(x, key): x for x in have}
    puts = [Op("add" if k not in h else "replace", kind, w[k]) for k in sorted(w) if w[k] != h.get(k)]
    dels = [Op("del", kind, h[k]) for k in sorted(h) if k not in w]
    return puts, dels


def diff(desired: OverlayState, actual: OverlayState) -> list[Op]:
    """Minimal ops turning `actual` into `desired`; empty when they match.

    A device whose VNI, port, local address or MAC differ is deleted and recreated (the kernel cannot
    change them in place), which drops every entry on it, so all of them are added again. FDB and
    neighbour entries go in before the routes that use them and come out after, so a route never
    points at an unresolvable VTEP; a changed next hop is replaced in place, never deleted first.
    """
    want, have = desired.device, actual.device
    if want is None:
        return [Op("del", "device", have.name)] if have is not None else []
    ops: list[Op] = []
    fresh = have is None or not same_link(want, have)
    if have is not None and fresh:
        ops.append(Op("del", "device", have.name))
    if fresh:
        ops.append(Op("add", "device", want))
        have_addrs: set[str] = set()
        actual = OverlayState()
    else:
        assert have is not None
        if want.mtu is not None and want.mtu != have.mtu:
            ops.append(Op("set", "mtu", want))
        have_addrs = set(have.addresses)
    ops += [Op("add", "addr", a) for a in sorted(set(want.addresses) - have_addrs)]
    ops += [Op("del", "addr", a) for a in sorted(have_addrs - set(want.addresses))]
    if fresh or (have is not None and not have.up):
        ops.append(Op("set", "up", want.name))
    fdb_put, fdb_del = _keyed("fdb", desired.fdb, actual.fdb, "mac")
    neigh_put, neigh_del = _keyed("neigh", desired.neighs, actual.neighs, "ip")
    route_put, route_del = _keyed("route", desired.routes, actual.routes, "dst")
    return ops + fdb_put + neigh_put + route_put + route_del + neigh_del + fdb_del


def overlay_fallback_for(node: Mapping[str, Any], pools: Iterable[Mapping[str, Any]]) -> bool:
    """Whether this node's pods may be VXLAN-encapsulated (so their MTU leaves room for 50 bytes): the
    node is on the overlay, or the pool holding its podCIDR has `routeLimitFallback: Overlay` (its peers
    or the node itself may move to the overlay at any time; a pod's MTU is fixed when it starts)."""
    if is_overlay(node):
        return True
    cidrs, _ = node_pod_cidrs(node)
    for obj in pools:
        try:
            spec = PoolSpec.from_resource(obj)
            nets = spec.networks
        except (PoolSpecError, InvalidCIDRError):
            continue
        if spec.overlay_fallback and any(c.version == n.version and c.subnet_of(n)  # type: ignore[arg-type]
                                         for c in cidrs for n in nets):
            return True
    return False


def any_overlay_pool(pools: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any pool has routeLimitFallback: Overlay (only then can a node be put on the overlay)."""
    for obj in pools:
        try:
            if PoolSpec.from_resource(obj).overlay_fallback:
                return True
        except PoolSpecError:
            continue
    return False


def node_projection(node: Mapping[str, Any]) -> tuple[object, ...]:
    """What of a Node the overlay depends on (podCIDRs, InternalIPs, transport): a watch event that does
    not change it (status heartbeats, labels) need not trigger a sync."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    addrs = (node.get("status") or {}).get("addresses") or []
    ips = tuple(str(a.get("address")) for a in addrs
                if isinstance(a, Mapping) and a.get("type") == "InternalIP")
    return (tuple(spec.get("podCIDRs") or ()), spec.get("podCIDR"), ips,
            (meta.get("annotations") or {}).get(TRANSPORT_ANNOTATION))
