"""Python model of a PodCIDRPool's spec (frozen dataclasses) and its parser from a Kubernetes object.

`PoolSpec.from_resource(obj)` checks *shape* only (types, defaults, the names of fields) and raises
PoolSpecError naming the offending field. Semantic checks (CIDR syntax, host bits, overlaps, block
counts) live in `routectl.ipam.validate`, so that a pool with one bad CIDR can still be loaded, reported
and keep its existing allocations. Field names mirror crds/podcidrpool.yaml (camelCase there,
snake_case here). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routectl.constants import (
    API_VERSION,
    DEFAULT_IPV4_MASK,
    DEFAULT_IPV6_MASK,
    DEFAULT_ROUTE_LIMIT_WARNING_PERCENT,
    POOL_KIND,
    ROUTE_LIMIT_FALLBACK_NONE,
    ROUTE_LIMIT_FALLBACK_OVERLAY,
    ROUTE_LIMIT_FALLBACKS,
)
from routectl.ipam.errors import PoolSpecError
from routectl.ipam.netutil import Network, parse_cidr


@dataclass(frozen=True)
class MasqueradeSpec:
    """spec.masquerade: destinations the node agent must NOT masquerade, and link-local handling."""

    non_masquerade_cidrs: tuple[str, ...] = ()
    masq_link_local: bool = False


@dataclass(frozen=True)
class PoolSpec:
    """One PodCIDRPool: its CIDRs (append-only), node mask per family, selector, reserved ranges, masquerade.

    `creation_timestamp` (metadata.creationTimestamp, ISO 8601, "" when unknown) orders pools by age
    when deciding which of two overlapping pools is blamed (the younger one).
    """

    name: str
    cidrs: tuple[str, ...]
    ipv4_mask: int = DEFAULT_IPV4_MASK
    ipv6_mask: int = DEFAULT_IPV6_MASK
    node_selector: Mapping[str, str] = field(default_factory=dict)
    reserved: tuple[str, ...] = ()
    masquerade: MasqueradeSpec = field(default_factory=MasqueradeSpec)
    route_limit_warning_percent: int = DEFAULT_ROUTE_LIMIT_WARNING_PERCENT
    creation_timestamp: str = ""
    # spec.routeLimitFallback: what a node gets when its route does not fit the table ("None": flag it;
    # "Overlay": the agents carry its pods' traffic over VXLAN)
    route_limit_fallback: str = ROUTE_LIMIT_FALLBACK_NONE

    @property
    def overlay_fallback(self) -> bool:
        """Whether nodes of this pool fall back to the VXLAN overlay when their route is refused."""
        return self.route_limit_fallback == ROUTE_LIMIT_FALLBACK_OVERLAY

    def __hash__(self) -> int:
        return hash((self.name, self.cidrs, self.ipv4_mask, self.ipv6_mask, self.reserved))

    @property
    def networks(self) -> tuple[Network, ...]:
        """The CIDRs parsed; raises InvalidCIDRError on the first malformed one (see validate_pool)."""
        return tuple(parse_cidr(c, f"spec.cidrs[{i}]") for i, c in enumerate(self.cidrs))

    @property
    def families(self) -> tuple[int, ...]:
        """IP families (4 and/or 6) served, in order of first appearance in `cidrs` (the first is primary).

        Unparsable CIDRs are ignored here; validate_pool reports them.
        """
        seen: list[int] = []
        for c in self.cidrs:
            fam = 6 if ":" in c else 4
            if fam not in seen:
                seen.append(fam)
        return tuple(seen)

    def mask_for(self, family: int) -> int:
        """Node mask size for IP family 4 or 6."""
        return self.ipv4_mask if family == 4 else self.ipv6_mask

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every nodeSelector pair is among `labels` (an empty selector matches every node)."""
        return all(labels.get(k) == v for k, v in self.node_selector.items())

    @classmethod
    def from_resource(cls, obj: Mapping[str, Any]) -> PoolSpec:
        """Parse a whole PodCIDRPool object (dict as read from the API or YAML) into a PoolSpec."""
        return _from_resource(cls, obj)

    def to_resource(self) -> dict[str, Any]:
        """Render back to a PodCIDRPool object (for tests, the CLI and the simulator)."""
        meta: dict[str, Any] = {"name": self.name}
        if self.creation_timestamp:
            meta["creationTimestamp"] = self.creation_timestamp
        spec: dict[str, Any] = {
            "cidrs": list(self.cidrs),
            "nodeMaskSizeIPv4": self.ipv4_mask,
            "nodeMaskSizeIPv6": self.ipv6_mask,
            "masquerade": {
                "nonMasqueradeCIDRs": list(self.masquerade.non_masquerade_cidrs),
                "masqLinkLocal": self.masquerade.masq_link_local,
            },
            "routeLimitWarningPercent": self.route_limit_warning_percent,
        }
        if self.route_limit_fallback != ROUTE_LIMIT_FALLBACK_NONE:
            spec["routeLimitFallback"] = self.route_limit_fallback
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.reserved:
            spec["reservedCIDRs"] = list(self.reserved)
        return {"apiVersion": API_VERSION, "kind": POOL_KIND, "metadata": meta, "spec": spec}


def _str_list(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PoolSpecError(f"{path} must be a list of CIDR strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _int(value: Any, path: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise PoolSpecError(f"{path} must be an integer, got {value!r}")
    return value


def _from_resource(cls: type[PoolSpec], obj: Mapping[str, Any]) -> PoolSpec:
    if not isinstance(obj, Mapping):
        raise PoolSpecError(f"a {POOL_KIND} must be a mapping, got {type(obj).__name__}")
    kind = obj.get("kind", POOL_KIND)
    if kind != POOL_KIND:
        raise PoolSpecError(f"kind must be {POOL_KIND}, got {kind!r}")
    meta = obj.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise PoolSpecError(f"metadata.name of a {POOL_KIND} must be a non-empty string, got {name!r}")
    where = f"{POOL_KIND} {name}: "
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise PoolSpecError(where + "spec is missing or not a mapping")
    try:
        if "cidrs" not in spec:
            raise PoolSpecError("spec.cidrs is required (at least one CIDR)")
        cidrs = _str_list(spec.get("cidrs"), "spec.cidrs")
        selector = spec.get("nodeSelector")
        selector = {} if selector is None else selector
        if not isinstance(selector, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
        ):
            raise PoolSpecError(f"spec.nodeSelector must map label names to string values, got {selector!r}")
        masq = spec.get("masquerade")
        masq = {} if masq is None else masq
        if not isinstance(masq, Mapping):
            raise PoolSpecError(f"spec.masquerade must be a mapping, got {masq!r}")
        link_local = masq.get("masqLinkLocal", False)
        if not isinstance(link_local, bool):
            raise PoolSpecError(f"spec.masquerade.masqLinkLocal must be true or false, got {link_local!r}")
        created = meta.get("creationTimestamp") or ""
        fallback = spec.get("routeLimitFallback", ROUTE_LIMIT_FALLBACK_NONE)
        if fallback not in ROUTE_LIMIT_FALLBACKS:
            raise PoolSpecError(f"spec.routeLimitFallback must be one of {', '.join(ROUTE_LIMIT_FALLBACKS)}, "
                                f"got {fallback!r}")
        return cls(
            name=name,
            cidrs=cidrs,
            ipv4_mask=_int(spec.get("nodeMaskSizeIPv4"), "spec.nodeMaskSizeIPv4", DEFAULT_IPV4_MASK),
            ipv6_mask=_int(spec.get("nodeMaskSizeIPv6"), "spec.nodeMaskSizeIPv6", DEFAULT_IPV6_MASK),
            node_selector=dict(selector),
            reserved=_str_list(spec.get("reservedCIDRs"), "spec.reservedCIDRs"),
            masquerade=MasqueradeSpec(
                non_masquerade_cidrs=_str_list(
                    masq.get("nonMasqueradeCIDRs"), "spec.masquerade.nonMasqueradeCIDRs"
                ),
                masq_link_local=link_local,
            ),
            route_limit_warning_percent=_int(
                spec.get("routeLimitWarningPercent"),
                "spec.routeLimitWarningPercent",
                DEFAULT_ROUTE_LIMIT_WARNING_PERCENT,
            ),
            creation_timestamp=str(created),
            route_limit_fallback=fallback,
        )
    except PoolSpecError as exc:
        raise PoolSpecError(where + str(exc)) from None


def route_scope(specs: Iterable[PoolSpec]) -> tuple[tuple[str, ...], int]:
    """Where routectl's routes may live and when to warn: every parsable pool CIDR (canonical, sorted)
    and the strictest route-limit warning percent among the pools (the default when there are none)."""
    cidrs: set[str] = set()
    warn = None
    for spec in specs:
        for text in spec.cidrs:
            try:
                cidrs.add(str(parse_cidr(text)))
            except ValueError:
                continue
        pct = spec.route_limit_warning_percent
        warn = pct if warn is None else min(warn, pct)
    return tuple(sorted(cidrs)), DEFAULT_ROUTE_LIMIT_WARNING_PERCENT if warn is None else warn



def node_masks(specs: Iterable[PoolSpec]) -> dict[str, int]:
    """Canonical pool CIDR -> its node mask (the family's nodeMaskSize): what a node block of that pool
    looks like, so a cloud driver can tell its own routes from a foreign route inside a pool."""
    out: dict[str, int] = {}
    for spec in specs:
        for text in spec.cidrs:
            try:
                net = parse_cidr(text)
            except ValueError:
                continue
            out[str(net)] = spec.ipv4_mask if net.version == 4 else spec.ipv6_mask
    return out
