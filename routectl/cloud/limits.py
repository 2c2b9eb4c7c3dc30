"""Pure route-limit planner: which planned creates fit each table, which are refused, and warnings.

A route that does not fit is reported, never attempted. Every warning names both ways out: raise the
quota (which one, to at least what) or move the cluster to an overlay network instead of VPC routes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from routectl.routes.model import LimitWarning, RouteAction, TableCapacity, family_of

OVERLAY_HINT = ("or move the cluster to an overlay network (e.g. VXLAN) instead of VPC routes, or set "
                "spec.routeLimitFallback: Overlay on the pool so only the nodes that do not fit use "
                "routectl's VXLAN overlay (UDP 8472 must be open between nodes; routectl cannot verify "
                "the firewall)")


@dataclass
class LimitFit:
    """Result of fitting planned creates into table capacities."""

    fits: list[RouteAction] = field(default_factory=list)
    refused: list[RouteAction] = field(default_factory=list)
    warnings: list[LimitWarning] = field(default_factory=list)


def ways_out(cap: TableCapacity, needed: int) -> str:
    """Human text naming both ways out for a table that needs `needed` routes in total."""
    return f"raise {cap.quota_name} to at least {needed} ({cap.raise_to_hint}), {OVERLAY_HINT}"


def cap_for(caps: Mapping[tuple[str, str | None], TableCapacity], table: str,
            destination: str) -> TableCapacity | None:
    """The capacity a route to `destination` in `table` counts against: its family's, else the table's."""
    return caps.get((table, family_of(destination))) or caps.get((table, None))


def fit_creates(
    creates: Sequence[RouteAction],
    deletes: Sequence[RouteAction],
    capacities: Sequence[TableCapacity],
    warn_percent: int = 80,
) -> LimitFit:
    """Admit creates capacity by capacity (per table, per IP family where the cloud counts families
    apart) while slots remain (deletes run first and free slots).

    Tables without a known capacity admit everything (the cloud will still answer a limit error,
    which the reconciler reports the same way). Warnings: "reached" when anything was refused or the
    capacity ends up full, "nearing" when it ends at or above `warn_percent` of the limit.
    """
    if not 0 < warn_percent <= 100:
        raise ValueError(f"warn_percent must be in 1..100, got {warn_percent}")
    caps = {c.key: c for c in capacities}
    freed: Counter[tuple[str, str | None]] = Counter()
    for a in deletes:
        cap = cap_for(caps, a.table, a.destination)
        if cap is not None:
            freed[cap.key] += 1
    result = LimitFit()
    room = {k: c.limit - c.used + freed[k] for k, c in caps.items()}
    refused_by: Counter[tuple[str, str | None]] = Counter()
    for a in creates:
        cap = cap_for(caps, a.table, a.destination)
        if cap is None:
            result.fits.append(a)
        elif room[cap.key] > 0:
            room[cap.key] -= 1
            result.fits.append(a)
        else:
            refused_by[cap.key] += 1
            result.refused.append(a)
    for key, cap in caps.items():
        end_used = cap.limit - room[key]
        needed = end_used + refused_by[key]
        pct = 100 * end_used / cap.limit if cap.limit else 100.0
        what = f"{cap.provider} route table {cap.display_id}"
        note = f" {cap.note}." if cap.note else ""
        if refused_by[key] or end_used >= cap.limit:
            kind: Literal["nearing", "reached"] = "reached"
            msg = (
                f"{what}: {end_used}/{cap.limit} routes used"
                f"{f', {refused_by[key]} route(s) refused (not attempted)' if refused_by[key] else ''}."
                f"{note} "
                f"Ways out: {ways_out(cap, max(needed, cap.limit + 1))}."
            )
        elif pct >= warn_percent:
            kind = "nearing"
            msg = (
                f"{what}: {end_used}/{cap.limit} routes used "
                f"({pct:.0f}% >= {warn_percent}%).{note} Ways out before it fills: "
                f"{ways_out(cap, cap.limit + 1)}."
            )
        else:
            continue
        result.warnings.append(
            LimitWarning(kind, cap.display_id, end_used, cap.limit, msg, refused_by[key], cap.provider,
                         cap.quota_name, needed)
        )
    return result
