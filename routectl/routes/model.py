"""Pure data model of cloud routes: what a node wants, what the cloud has, what to do about it.

Shared by the diff, the limit planner, both cloud drivers and the controller; no I/O here.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ActionKind = Literal["create", "replace", "delete", "keep"]


@dataclass(frozen=True, slots=True)
class NodeRoutes:
    """A node as the route layer sees it: identity, where its traffic goes, which blocks it owns."""

    name: str
    uid: str
    provider_id: str | None
    pod_cidrs: tuple[str, ...] = ()
    # metadata.creationTimestamp (ISO 8601; "" unknown): when the table is short of room, older nodes'
    # creates are admitted first, so overlay nodes move back to routes oldest first
    created: str = ""


@dataclass(frozen=True, slots=True)
class CloudRoute:
    """One route as listed from a cloud table; `owned` says whether routectl may ever touch it."""

    table: str
    destination: str
    target: str | None
    name: str | None = None
    state: str = "active"
    owned: bool = False
    node: str | None = None


@dataclass(frozen=True, slots=True)
class RouteAction:
    """One step of a plan: create, replace (next hop differs or blackhole), delete (stale) or keep."""

    kind: ActionKind
    table: str
    destination: str
    target: str | None
    node: str | None
    route: CloudRoute | None = None


Family = Literal["ipv4", "ipv6"]
# Where a capacity's limit comes from: the quota API, the cloud's own refusal (a limit error at that
# count), or an upper bound assumed because the quota could not be read (routes are then attempted).
LimitSource = Literal["quota", "learned", "assumed"]


@dataclass(frozen=True)
class TableCapacity:
    """How full one route table (AWS, per IP family) or the network's route quota (GCE) is, and how to
    raise it. `family` None means one count for both families; `note` says why a limit is not the quota's
    (e.g. which permission is missing)."""

    table: str
    used: int
    limit: int
    quota_name: str
    raise_to_hint: str
    provider: str
    family: Family | None = None
    source: LimitSource = "quota"
    note: str = ""

    @property
    def free(self) -> int:
        """Slots left before the cloud refuses a new route (never negative)."""
        return max(0, self.limit - self.used)

    @property
    def key(self) -> tuple[str, Family | None]:
        """(table, family): what the planner counts against."""
        return (self.table, self.family)

    @property
    def display_id(self) -> str:
        """`rtb-1/ipv6` for a per-family count, the table alone for a shared one (unique per capacity)."""
        return self.table if self.family is None else f"{self.table}/{self.family}"

    def status_entry(self) -> dict[str, str | int]:
        """The pool status' routeTables item: id, used, limit, and where the limit comes from when it is
        not the quota's (limitSource, note)."""
        out: dict[str, str | int] = {"id": self.display_id, "used": self.used, "limit": self.limit}
        if self.source != "quota":
            out["limitSource"] = self.source
        if self.note:
            out["note"] = self.note
        return out


def family_of(cidr: str) -> Family:
    """"ipv6" for an IPv6 destination, else "ipv4" (prefix-list ids and the like count as IPv4)."""
    return "ipv6" if ":" in cidr else "ipv4"


@dataclass(frozen=True)
class LimitWarning:
    """A table nearing or at its route limit; the message names both ways out (quota, overlay)."""

    kind: Literal["nearing", "reached"]
    table: str
    used: int
    limit: int
    message: str
    refused: int = 0
    provider: str = ""
    quota_name: str = ""
    needed: int = 0


@dataclass
class NodeRouteStatus:
    """Outcome of routing one node: ok with reason RouteCreated, or why not (reason + message)."""

    ok: bool
    reason: str
    message: str = ""


@dataclass
class CallStats:
    """Snapshot of cloud calls by operation name plus throttled answers (for metrics and benchmarks)."""

    calls: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    errors: int = 0

    @property
    def total(self) -> int:
        """All calls made."""
        return sum(self.calls.values())


@functools.lru_cache(maxsize=1 << 17)
def canonical_cidr(cidr: str) -> str:
    """Normalise a CIDR (`10.0.1.0/24`, IPv6 compressed) so diffing compares like with like.

    Memoised: a resync canonicalises every desired and listed route several times, and parsing was most
    of its CPU at 5,000 routes (the same few thousand texts come back every pass)."""
    return str(_network(cidr))


@functools.lru_cache(maxsize=1 << 17)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """`ipaddress.ip_network(cidr, strict=False)`, memoised (networks are immutable)."""
    return ipaddress.ip_network(cidr, strict=False)


def canonical_or_raw(cidr: str) -> str:
    """`canonical_cidr`, or the text unchanged when it does not parse (so a bad value still shows)."""
    try:
        return canonical_cidr(cidr)
    except ValueError:
        return cidr


def is_cidr(text: str) -> bool:
    """True when `text` parses as a CIDR (host bits allowed: `canonical_cidr` gives the network)."""
    try:
        canonical_cidr(text)
    except ValueError:
        return False
    return True


def node_pod_cidrs(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The podCIDRs of a Node body as written: spec.podCIDRs, else the single spec.podCIDR of old objects."""
    spec = body.get("spec") or {}
    return tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


@functools.lru_cache(maxsize=1 << 17)
def cidr_order(cidr: str) -> tuple[int, int, int]:
    """(IP version, network address, prefix length): the address order of CIDRs (memoised: the diff sorts
    every route by it each resync)."""
    net = _network(cidr)
    return (net.version, int(net.network_address), net.prefixlen)


@functools.lru_cache(maxsize=1 << 16)
def inside_any(cidr: str, pools: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """True when `cidr` lies inside (or equals) one of `pools` of the same IP family (memoised: every
    resync asks it for every node's block and every listed route)."""
    try:
        net = _network(cidr)
    except ValueError:
        return False
    return any(net.version == p.version and net.subnet_of(p) for p in pools)  # type: ignore[arg-type]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_pools(cidrs: tuple[str, ...] | list[str]) -> tuple[Network, ...]:
    """Parse cluster CIDRs, raising ValueError with the bad value named."""
    out = []
    for c in cidrs:
        try:
            out.append(ipaddress.ip_network(c, strict=False))
        except ValueError as e:
            raise ValueError(f"invalid cluster CIDR {c!r}: {e}") from e
    return tuple(out)
