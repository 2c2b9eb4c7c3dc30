"""Pure `routectl status` report: pools (status vs recomputed usage), route tables, nodes without routes and
why, warnings with advice and routectl's recent Warning events -> the schema-1 status dict. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from routectl.cloud.reconcile import RoutePlan
from routectl.constants import COMPONENT
from routectl.ops.planning import Waiting
from routectl.ops.report import (
    SCHEMA_VERSION,
    canon,
    detail_reason,
    name_of,
    network_unavailable,
    pod_cidrs,
    pool_entry,
    routes_by_destination,
    table_entry,
    warnings,
)
from routectl.routes.fallback import REASON_ROUTE_OVERLAY

Obj = Mapping[str, Any]
REASON_NO_POD_CIDR = "NoPodCIDR"
REASON_ROUTE_MISSING = "RouteMissing"


def tables_from_pools(pools: Iterable[Obj]) -> list[dict[str, Any]]:
    """Route tables as the controller last reported them in pool status (when the cloud is not read)."""
    seen: dict[str, dict[str, Any]] = {}
    for p in pools:
        for t in (p.get("status") or {}).get("routeTables") or []:
            if t.get("id") and t["id"] not in seen:
                used, limit = int(t.get("used", 0)), int(t.get("limit", 0))
                seen[t["id"]] = {"id": t["id"], "used": used, "limit": limit, "free": max(0, limit - used),
                                 "quota": "", "note": str(t.get("note", ""))}
    return list(seen.values())


def node_without_route(node: Obj, plan: RoutePlan | None, by_dest: Mapping[str, list[Any]],
                       waiting: Mapping[str, Waiting]) -> dict[str, Any] | None:
    """The node's entry when it lacks a route (or a block), with the reason and message; None when fine.

    With the cloud read (`plan`), a node whose condition says RouteCreated but whose route is missing
    from some table is reported too (RouteMissing: drift the next resync repairs).
    """
    cond = network_unavailable(node)
    cidrs = pod_cidrs(node)
    routes = [r for c in cidrs for r in by_dest.get(canon(c), [])]
    entry = {"name": name_of(node), "podCIDRs": cidrs, "networkUnavailable": cond,
             "routes": [{"table": r.table, "destination": canon(r.destination), "nextHop": r.target,
                         "state": r.state} for r in routes]}
    if not cidrs:
        w = waiting.get(name_of(node))
        if w is not None and w.problem:
            msg = w.problem
        elif w is not None:
            msg = f"waiting for a block from pool {w.pool} (next free: {', '.join(w.pod_cidrs)})"
        else:
            msg = "waiting for a block"
        return {**entry, "reason": REASON_NO_POD_CIDR, "message": msg}
    if cond["status"] != "False":
        return {**entry, "reason": detail_reason(cond), "message": cond["message"]}
    if cond["reason"] == REASON_ROUTE_OVERLAY:  # no route by design: on the VXLAN overlay
        return {**entry, "reason": REASON_ROUTE_OVERLAY, "message": cond["message"]}
    if plan is not None:
        tables = [c.table for c in plan.tables]
        have = {(r.table, canon(r.destination)) for r in routes if r.state == "active"}
        missing = [(t, canon(c)) for t in tables for c in cidrs if (t, canon(c)) not in have]
        if missing:
            where = ", ".join(f"{c} in {t}" for t, c in missing)
            return {**entry, "reason": REASON_ROUTE_MISSING,
                    "message": f"NetworkUnavailable says {cond['reason']} but the cloud has no active route "
                               f"for {where}; the controller's next resync re-creates it"}
    return None


def _event_time(e: Obj) -> str:
    return str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "")


def recent_warning_events(events: Iterable[Obj], limit: int = 20) -> list[dict[str, Any]]:
    """routectl's Warning Events, newest last (at most `limit`)."""
    mine = [e for e in events if e.get("type") == "Warning"
            and COMPONENT in ((e.get("source") or {}).get("component"), e.get("reportingComponent"))]
    mine.sort(key=_event_time)
    out = []
    for e in mine[-limit:]:
        obj = e.get("involvedObject") or {}
        out.append({"time": _event_time(e), "object": f"{obj.get('kind', '')}/{obj.get('name', '')}",
                    "reason": str(e.get("reason", "")), "message": str(e.get("message", "")),
                    "count": int(e.get("count") or 1)})
    return out


def status_report(*, provider: str | None, nodes: Sequence[Obj], pools: Sequence[Obj], events: Iterable[Obj],
                  plan: RoutePlan | None, waiting: Sequence[Waiting], ipam: Mapping[str, Any],
                  cloud_error: str | None) -> dict[str, Any]:
    """The `routectl status` result (schema version 1; see routectl.ops.schema.STATUS_SCHEMA)."""
    usage = ipam.get("usage") or {}
    pool_list = []
    for p in sorted(pools, key=name_of):
        entry = pool_entry(p)
        entry["recomputed"] = usage.get(entry["name"])
        pool_list.append(entry)
    by_dest = routes_by_destination(plan.routes) if plan else {}
    by_name = {w.node: w for w in waiting}
    without = [e for n in sorted(nodes, key=name_of)
               if (e := node_without_route(n, plan, by_dest, by_name)) is not None]
    caps = plan.tables if plan else []
    warns = warnings(plan.warnings if plan else None, caps, pools)
    routed = sum(1 for n in nodes if network_unavailable(n)["status"] == "False")
    return {
        "schemaVersion": SCHEMA_VERSION,
        "kind": "Status",
        "cloud": provider,
        "cloudRead": plan is not None,
        "cloudError": cloud_error,
        "pools": pool_list,
        "routeTables": [dict(table_entry(c), source="cloud") for c in caps] if plan else
        [dict(t, source="poolStatus") for t in tables_from_pools(pools)],
        "nodesWithoutRoutes": without,
        "warnings": warns,
        "recentWarningEvents": recent_warning_events(events),
        "ipamFindings": list(ipam.get("findings") or []),
        "summary": {"nodes": len(nodes), "routed": routed, "withoutRoute": len(without), "pools": len(pools),
                    "warnings": len(warns)},
    }
