"""Semantic validation of PoolSpecs, one pool and a whole set of pools; messages say what to change.

Checks: malformed CIDR, host bits set, node mask out of range or shorter than a CIDR's prefix, more
than 2**16 blocks per CIDR, overlaps inside a pool and between pools, reserved / non-masquerade ranges
malformed, pool or non-masquerade CIDRs too wide to keep NAT-less (`non_masquerade_problem`, the one rule
the node agent applies too), routeLimitWarningPercent out of 1..100, a selector that is not a string map.

Blame rule for overlaps (documented, deterministic):

* inside one pool, the CIDR listed *later* is blamed (cidrs are append-only, so it is the newer one);
* between pools, the CIDR with the larger *age key* is blamed. `validate_pools` takes an optional
  `order` (pool names, oldest first); pools missing from it, or all pools when it is None, are ranked by
  (metadata.creationTimestamp, name), pools without a timestamp last. Within a pool the list index
  breaks ties. The Allocator passes its own ages so that a CIDR appended to an *older* pool that
  overlaps a *younger* pool's existing CIDR blames the appended CIDR.

A problem attached to one CIDR only stops that CIDR from serving new blocks; any other problem makes
the whole pool serve nothing new (existing allocations always stay occupied). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from routectl.ipam.cidrset import check_block_count
from routectl.ipam.errors import InvalidCIDRError
from routectl.ipam.model import PoolSpec
from routectl.ipam.netutil import Network, parse_cidr

# Age key of (pool, index in spec.cidrs): smaller is older.
AgeKey = Callable[[PoolSpec, int], tuple]

# The widest destination the node agent may leave un-masqueraded, in both families. 10.0.0.0/8 (RFC 1918)
# and fd00::/8 (RFC 4193 unique-local) are the widest ranges legitimately kept NAT-less; anything wider is
# mostly internet space, and two of them (0.0.0.0/1 + 128.0.0.0/1) or one /0 switch masquerading off for
# the whole family. The CRD's CEL rule `cidr(self).prefixLength() >= 8` states the same (a test mirrors it).
MIN_NON_MASQUERADE_PREFIX = 8


def non_masquerade_problem(net: Network, what: str) -> str | None:
    """Why `net` must not be a destination the agent leaves un-masqueraded, or None when it may be.

    One rule shared by validate_pool (pool CIDRs and spec.masquerade.nonMasqueradeCIDRs) and the node
    agent (which drops such an entry and reports it), so the controller never calls valid what agents refuse.
    """
    if net.prefixlen >= MIN_NON_MASQUERADE_PREFIX:
        return None
    return (
        f"{what} {net} is too wide: the node agent never masquerades pod traffic to pool CIDRs and "
        f"non-masquerade CIDRs, so a /{net.prefixlen} would leave (most of) the internet un-masqueraded; "
        f"use prefixes of /{MIN_NON_MASQUERADE_PREFIX} or longer (e.g. 10.0.0.0/8, fd00::/8), listing "
        "the VPC or node ranges themselves"
    )


@dataclass(frozen=True)
class Problem:
    """One validation problem; `cidr_index` is set when only that CIDR of the pool is affected."""

    pool: str
    message: str
    cidr_index: int | None = None


def _pool_problems(spec: PoolSpec) -> tuple[list[Problem], dict[int, Network]]:
    """Problems of one pool alone, plus its usable CIDRs by index."""
    out: list[Problem] = []
    good: dict[int, Network] = {}
    p = spec.name

    if not spec.name:
        out.append(Problem(p, "metadata.name must not be empty"))
    for mask, field_name, maxlen in (
        (spec.ipv4_mask, "nodeMaskSizeIPv4", 32),
        (spec.ipv6_mask, "nodeMaskSizeIPv6", 128),
    ):
        if not 1 <= mask <= maxlen:
            out.append(Problem(p, f"spec.{field_name} /{mask} is out of range: use 1 to {maxlen}"))
    if not spec.cidrs:
        out.append(Problem(p, "spec.cidrs is empty: list at least one CIDR, e.g. 10.244.0.0/16"))
    for i, raw in enumerate(spec.cidrs):
        what = f"spec.cidrs[{i}]"
        try:
            net = parse_cidr(raw, what)
            check_block_count(net, spec.mask_for(net.version), what)
        except InvalidCIDRError as exc:
            out.append(Problem(p, str(exc), i))
            continue
        wide = non_masquerade_problem(net, what)
        if wide is not None:
            out.append(Problem(p, wide, i))
            continue
        clash = next((j for j, other in good.items() if other.overlaps(net)), None)  # type: ignore[arg-type]
        if clash is not None:
            out.append(
                Problem(
                    p,
                    f"{what} {net} overlaps spec.cidrs[{clash}] {good[clash]} of the same pool; "
                    "remove the overlap (a later CIDR must not overlap an earlier one)",
                    i,
                )
            )
            continue
        good[i] = net
    for i, raw in enumerate(spec.reserved):
        try:
            parse_cidr(raw, f"spec.reservedCIDRs[{i}]")
        except InvalidCIDRError as exc:
            out.append(Problem(p, str(exc)))
    for i, raw in enumerate(spec.masquerade.non_masquerade_cidrs):
        what = f"spec.masquerade.nonMasqueradeCIDRs[{i}]"
        try:
            wide = non_masquerade_problem(parse_cidr(raw, what), what)
        except InvalidCIDRError as exc:
            wide = str(exc)
        if wide is not None:
            out.append(Problem(p, wide))
    if not 1 <= spec.route_limit_warning_percent <= 100:
        out.append(
            Problem(
                p,
                f"spec.routeLimitWarningPercent {spec.route_limit_warning_percent} is out of range: "
                "use a percentage from 1 to 100",
            )
        )
    for k, v in spec.node_selector.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            out.append(Problem(p, f"spec.nodeSelector entry {k!r}: {v!r} must map a label name to a string"))
    return out, good


def default_order_key(spec: PoolSpec) -> tuple:
    """Pool age key: (no timestamp?, creationTimestamp, name): oldest first, untimed pools last."""
    return (spec.creation_timestamp == "", spec.creation_timestamp, spec.name)


def check_pools(specs: Iterable[PoolSpec], age: AgeKey | None = None) -> list[Problem]:
    """All problems of `specs`, structured (used by the Allocator; see validate_pools for the rule)."""
    specs = list(specs)
    problems: list[Problem] = []
    usable: list[tuple[tuple, PoolSpec, int, Network]] = []
    if age is None:
        age = lambda spec, i: (default_order_key(spec), i)  # noqa: E731
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            problems.append(Problem(spec.name, f"pool name {spec.name!r} is used by more than one pool"))
            continue
        seen.add(spec.name)
        own, good = _pool_problems(spec)
        problems.extend(own)
        usable.extend((age(spec, i), spec, i, net) for i, net in good.items())
    usable.sort(key=lambda t: t[0])
    for n, (_, spec, i, net) in enumerate(usable):
        for _, ospec, oi, onet in usable[:n]:
            if ospec.name != spec.name and onet.version == net.version and onet.overlaps(net):  # type: ignore[arg-type]
                problems.append(
                    Problem(
                        spec.name,
                        f"spec.cidrs[{i}] {net} overlaps {onet} of the older pool {ospec.name} "
                        f"(its spec.cidrs[{oi}]); pool CIDRs must not overlap: remove or change this CIDR",
                        i,
                    )
                )
                break
    return problems


def validate_pool(spec: PoolSpec) -> list[str]:
    """Problems of one pool on its own (empty list = valid)."""
    return [p.message for p in _pool_problems(spec)[0]]


def validate_pools(specs: Iterable[PoolSpec], order: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Problems per pool name (every pool gets a key; [] = valid), overlaps between pools included.

    `order` lists pool names oldest first; the younger pool's CIDR is blamed for an overlap.
    """
    specs = list(specs)
    rank = {name: n for n, name in enumerate(order or ())}

    def age(spec: PoolSpec, i: int) -> tuple:
        return (rank.get(spec.name, len(rank)), default_order_key(spec), i)

    out: dict[str, list[str]] = {s.name: [] for s in specs}
    for p in check_pools(specs, age):
        out.setdefault(p.pool, []).append(p.message)
    return out
