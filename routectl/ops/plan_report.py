"""Pure `routectl plan` report: a RoutePlan (read-only) + the IPAM prediction -> the schema-1 plan dict.

Per table: how many routes would be created, replaced, deleted and kept, the refused creates that do not
fit, used before/after and the headroom after the change (and after the waiting nodes get their blocks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from routectl.cloud.base import REASON_ROUTE_LIMIT
from routectl.cloud.limits import cap_for
from routectl.cloud.reconcile import REASON_ROUTE_PENDING, RoutePlan
from routectl.constants import REASON_ROUTE_CREATED
from routectl.ops.planning import Waiting
from routectl.ops.report import SCHEMA_VERSION, warnings
from routectl.routes.model import RouteAction

# Per-node statuses that are the plan itself, not a problem with the node.
_PLANNED = (REASON_ROUTE_CREATED, REASON_ROUTE_PENDING, REASON_ROUTE_LIMIT)


def action_entry(a: RouteAction) -> dict[str, Any]:
    """One route action: what, where, to which next hop (and from which, for replace/delete)."""
    return {"kind": a.kind, "table": a.table, "destination": a.destination, "node": a.node,
            "nextHop": a.target if a.kind != "delete" else None,
            "currentNextHop": a.route.target if a.route is not None else None,
            "routeName": a.route.name if a.route is not None else None}


def table_plans(plan: RoutePlan, pending_routes: int) -> list[dict[str, Any]]:
    """Per table: action counts, used before/after, limit, headroom after (and after waiting nodes)."""
    caps = {c.key: c for c in plan.tables}

    def cid(a: Any) -> str:  # the capacity an action counts against (table, or table/family on AWS)
        cap = cap_for(caps, a.table, a.destination)
        return cap.display_id if cap is not None else a.table

    kinds: Counter[tuple[str, str]] = Counter((cid(a), a.kind) for a in [*plan.actions, *plan.keeps])
    refused = Counter(cid(a) for a in plan.refused)
    out = []
    for cap in plan.tables:
        t = cap.display_id
        after = cap.used + kinds[(t, "create")] - kinds[(t, "delete")]
        out.append({
            "id": t, "create": kinds[(t, "create")], "replace": kinds[(t, "replace")],
            "delete": kinds[(t, "delete")], "keep": kinds[(t, "keep")], "refused": refused[t],
            "usedBefore": cap.used, "usedAfter": after, "limit": cap.limit,
            "headroomAfter": cap.limit - after,
            "headroomAfterWaitingNodes": cap.limit - after - refused[t] - pending_routes,
            "quota": cap.quota_name,
        })
    return out


def plan_report(*, provider: str, plan: RoutePlan | None, waiting: Sequence[Waiting],
                pools: Iterable[Mapping[str, Any]], ipam: Mapping[str, Any]) -> dict[str, Any]:
    """The `routectl plan` result (schema version 1; see routectl.ops.schema.PLAN_SCHEMA).

    `plan` None means no pool defines a CIDR: nothing can be routed, only the IPAM part is reported.
    """
    pools = list(pools)
    pending = sum(len(w.pod_cidrs) for w in waiting)
    tables = table_plans(plan, pending) if plan else []
    actions = [action_entry(a) for a in plan.actions] if plan else []
    problems = []
    if plan:
        for name, st in sorted(plan.nodes.items()):
            if not st.ok and st.reason not in _PLANNED:
                problems.append({"node": name, "reason": st.reason, "message": st.message})
    counts = Counter(a["kind"] for a in actions)
    summary = {"create": counts["create"], "replace": counts["replace"], "delete": counts["delete"],
               "keep": len(plan.keeps) if plan else 0, "refused": len(plan.refused) if plan else 0,
               "waitingNodes": len(waiting), "nodeProblems": len(problems)}
    summary["changes"] = summary["create"] + summary["replace"] + summary["delete"]
    return {
        "schemaVersion": SCHEMA_VERSION,
        "kind": "RoutePlan",
        "cloud": provider,
        "tables": tables,
        "actions": actions,
        "keep": [action_entry(a) for a in plan.keeps] if plan else [],
        "refused": [action_entry(a) for a in plan.refused] if plan else [],
        "waitingNodes": [w.to_dict() for w in waiting],
        "nodeProblems": problems,
        "ipamFindings": list(ipam.get("findings") or []),
        "warnings": warnings(plan.warnings if plan else None, plan.tables if plan else [], pools),
        "cloudCalls": dict(plan.calls.calls) if plan else {},
        "summary": summary,
    }
