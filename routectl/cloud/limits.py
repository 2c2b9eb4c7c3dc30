"""Pure route-limit planner: which planned creates fit each table, which are refused, and warnings.

A route that does not fit is reported, never attempted. Every warning names both ways out: raise the
quota (which one, to at least what) or move the cluster to an overlay network instead of VPC routes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from routectl.routes.model import LimitWarning, RouteAction, TableCapacity

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


def fit_creates(
    creates: Sequence[RouteAction],
    deletes: Sequence[RouteAction],
    capacities: Sequence[TableCapacity],
    warn_percent: int = 80,
) -> LimitFit:
    """Admit creates table by table while slots remain (deletes run first and free slots).

    Tables without a known capacity admit everything (the cloud will still answer a limit error,
    which the reconciler reports the same way). Warnings: "reached" when anything was refused or the
    table ends up full, "nearing" when it ends at or above `warn_percent` of the limit.
    """
    if not 0 < warn_percent <= 100:
        raise ValueError(f"warn_percent must be in 1..100, got {warn_percent}")
    caps = {c.table: c for c in capacities}
    freed = Counter(a.table for a in deletes)
    result = LimitFit()
    room = {t: c.limit - c.used + freed[t] for t, c in caps.items()}
    refused_by: Counter[str] = Counter()
    wanted_by: Counter[str] = Counter()
    for a in creates:
        wanted_by[a.table] += 1
        if a.table not in caps:
            result.fits.append(a)
        elif room[a.table] > 0:
            room[a.table] -= 1
            result.fits.append(a)
        else:
            refused_by[a.table] += 1
            result.refused.append(a)
    for table, cap in caps.items():
        end_used = cap.limit - room[table]
        needed = end_used + refused_by[table]
        pct = 100 * end_used / cap.limit if cap.limit else 100.0
        if refused_by[table] or end_used >= cap.limit:
            kind = "reached"
            msg = (
                f"{cap.provider} route table {table}: {end_used}/{cap.limit} routes used"
                f"{f', {refused_by[table]} route(s) refused (not attempted)' if refused_by[table] else ''}. "
                f"Ways out: {ways_out(cap, max(needed, cap.limit + 1))}."
            )
        elif pct >= warn_percent:
            kind = "nearing"
            msg = (
                f"{cap.provider} route table {table}: {end_used}/{cap.limit} routes used "
                f"({pct:.0f}% >= {warn_percent}%). Ways out before it fills: "
                f"{ways_out(cap, cap.limit + 1)}."
            )
        else:
            continue
        result.warnings.append(
            LimitWarning(kind, table, end_used, cap.limit, msg, refused_by[table], cap.provider,
                         cap.quota_name, needed)
        )
    return result
