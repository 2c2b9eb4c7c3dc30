"""Pure text rendering of the report dicts (routectl.ops.report): aligned columns, warnings with their
advice after the tables, one summary line last. Reads only the documented JSON shapes."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from routectl.ops.report import detail_reason

NONE = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; None and "" print as "-"."""
    cells = [[NONE if v is None or v == "" else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _wrap(text: str, indent: str, width: int = 100) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent) or [indent]


def table_count(route_tables: Sequence[Mapping[str, Any]]) -> int:
    """How many route tables a node's route must be in: AWS reports one capacity per IP family of a table
    (`rtb-1/ipv4`, `rtb-1/ipv6`), which is still one table."""
    return len({str(t["id"]).removesuffix("/ipv4").removesuffix("/ipv6") for t in route_tables})


def node_route_cells(node: Mapping[str, Any], table_count: int) -> tuple[str | None, str | None]:
    """(ROUTE, NEXT HOP) cells: the destination(s) and hop(s); "(k/n tables)" when not in every table."""
    routes = node["routes"]
    if not routes:
        return None, None
    dests = sorted({r["destination"] for r in routes})
    hops = sorted({str(r["nextHop"]) for r in routes})
    route = ",".join(dests)
    expected = table_count * max(1, len(node["podCIDRs"]))
    if table_count > 1 and len(routes) < expected:
        route += f" ({len(routes)}/{expected} tables)"
    bad = [r for r in routes if r.get("state", "active") != "active"]
    if bad:
        route += f" [{bad[0]['state']}]"
    return route, ",".join(hops)


def render_nodes(nodes: Sequence[Mapping[str, Any]], table_count: int) -> str:
    """Per node: name, podCIDR, route, next hop, NetworkUnavailable status and reason."""
    rows = []
    for n in nodes:
        route, hop = node_route_cells(n, table_count)
        cond = n["networkUnavailable"]
        reason = cond["reason"]
        detail = detail_reason(cond)
        if detail and detail != reason:
            reason = f"{reason}/{detail}"
        rows.append((n["name"], ",".join(n["podCIDRs"]), route, hop, cond["status"], reason))
    return table(("NODE", "POD CIDR", "ROUTE", "NEXT HOP", "NETWORK UNAVAILABLE", "REASON"), rows)


def render_tables(tables: Sequence[Mapping[str, Any]]) -> str:
    """Per route table: used / limit / free."""
    rows = [(t["id"], t["used"], t["limit"], t["free"],
             f"{100 * t['used'] / t['limit']:.0f}%" if t["limit"] else NONE) for t in tables]
    return table(("ROUTE TABLE", "USED", "LIMIT", "FREE", "FULL"), rows)


def render_pools(pools: Sequence[Mapping[str, Any]]) -> str:
    """Per pool: CIDRs, node mask, allocated / free / capacity, routes programmed, Ready."""
    rows = []
    for p in pools:
        ready = next((c for c in p["conditions"] if c["type"] == "Ready"), None)
        rows.append((p["name"], ",".join(p["cidrs"]), p.get("nodeMaskSizeIPv4"), p.get("allocated"),
                     p.get("free"), p.get("capacity"),
                     f"{p.get('routesProgrammed')} (+{p.get('overlayNodes') or 0} overlay)"
                     if "overlayNodes" in p else p.get("routesProgrammed"),
                     f"{ready['status']} ({ready['reason']})" if ready else None))
    return table(("POOL", "CIDRS", "MASK", "ALLOCATED", "FREE", "CAPACITY", "ROUTED", "READY"), rows)


def _short(message: str) -> str:
    """A message without its trailing advice (the warnings section lists the ways out)."""
    return message.split(" Ways out", 1)[0]


def render_warnings(warnings: Sequence[Mapping[str, Any]]) -> str:
    """Each warning: kind and where, its message, then every way out."""
    lines: list[str] = []
    for w in warnings:
        where = []
        if w.get("pool"):
            where.append(f"pool {w['pool']}")
        if w.get("table"):
            where.append(f"table {w['table']}")
        if w.get("used") is not None and w.get("limit") is not None:
            where.append(f"{w['used']}/{w['limit']} routes")
        lines.append(f"WARNING {w['kind']}" + (f" ({', '.join(where)})" if where else "") + ":")
        message = _short(w["message"]) if w.get("advice") else w["message"]  # the advice follows as a list
        lines += _wrap(message, "  ")
        if w.get("advice"):
            lines.append("  Ways out:")
            for a in w["advice"]:
                lines += textwrap.wrap(a, width=100, initial_indent="    - ", subsequent_indent="      ")
    return "\n".join(lines)


def render_simulate(report: Mapping[str, Any]) -> str:
    """The whole `routectl simulate` text output."""
    parts = [f"Nodes ({report['cloud']}):", render_nodes(report["nodes"], table_count(report["routeTables"])),
             ""]
    parts += ["Route tables:", render_tables(report["routeTables"]), ""]
    parts += ["Pools:", render_pools(report["pools"]), ""]
    if report["warnings"]:
        parts += [render_warnings(report["warnings"]), ""]
    parts.append(simulate_summary(report))
    return "\n".join(parts)


def simulate_summary(report: Mapping[str, Any]) -> str:
    """The final line: converged or not, in how long, nodes routed / without routes, warnings."""
    s = report["summary"]
    overlay = f"{s['overlay']} on the overlay, " if "overlay" in s else ""
    working = f" ({s['working']} working)" if "working" in s else ""
    counts = (f"{s['nodes']} nodes{working}, {s['routed']} routed, {overlay}{s['withoutRoute']} without "
              f"route, {s['warnings']} warning(s)")
    if report["converged"]:
        return f"Converged in {report['elapsedSeconds']:.1f}s on {report['cloud']}: {counts}."
    return (f"NOT converged after {report['elapsedSeconds']:.1f}s on {report['cloud']}: {counts}. "
            f"{report.get('failure') or ''}").rstrip()


def render_plan(report: Mapping[str, Any]) -> str:
    """`routectl plan` text: per table counts and headroom, the changes, waiting nodes, warnings."""
    parts = [f"Route plan ({report['cloud']}), read-only: nothing was changed.", ""]
    rows = [(t["id"], t["create"], t["replace"], t["delete"], t["keep"], t["refused"],
             f"{t['usedBefore']}->{t['usedAfter']}/{t['limit']}", t["headroomAfter"],
             t["headroomAfterWaitingNodes"]) for t in report["tables"]]
    parts += [table(("ROUTE TABLE", "CREATE", "REPLACE", "DELETE", "KEEP", "REFUSED", "USED", "HEADROOM",
                     "HEADROOM+WAITING"), rows), ""]
    changes = [*report["actions"], *({**r, "kind": "refused"} for r in report["refused"])]
    if changes:
        rows = [(a["kind"], a["table"], a["destination"], a["node"], a["currentNextHop"], a["nextHop"])
                for a in changes]
        parts += ["Changes:", table(("ACTION", "TABLE", "DESTINATION", "NODE", "FROM", "TO"), rows), ""]
    if report["waitingNodes"]:
        rows = [(w["node"], w["pool"], ",".join(w["podCIDRs"]), w["problem"]) for w in report["waitingNodes"]]
        parts += ["Nodes waiting for a pod CIDR (block a fresh IPAM would give; the controller may pick "
                  "another free one):", table(("NODE", "POOL", "WOULD GET", "PROBLEM"), rows), ""]
    if report["nodeProblems"]:
        rows = [(p["node"], p["reason"], p["message"]) for p in report["nodeProblems"]]
        parts += ["Nodes that cannot be routed:", table(("NODE", "REASON", "MESSAGE"), rows), ""]
    if report["warnings"]:
        parts += [render_warnings(report["warnings"]), ""]
    s = report["summary"]
    parts.append(f"Plan: {s['create']} to create, {s['replace']} to replace, {s['delete']} to delete, "
                 f"{s['keep']} to keep, {s['refused']} refused by the route limit, "
                 f"{s['waitingNodes']} node(s) waiting for a block.")
    return "\n".join(parts)


def render_status(report: Mapping[str, Any]) -> str:
    """`routectl status` text: pools, route tables, nodes without routes and why, warnings, recent events."""
    rows = []
    for p in report["pools"]:
        r = p.get("recomputed") or {}
        ready = next((c for c in p["conditions"] if c["type"] == "Ready"), None)
        rows.append((p["name"], ",".join(p["cidrs"]), p.get("allocated"), r.get("allocated"), p.get("free"),
                     r.get("free"), p.get("capacity"), p.get("routesProgrammed"),
                     f"{ready['status']} ({ready['reason']})" if ready else None))
    parts = ["Pools (status / recomputed from the nodes' podCIDRs):",
             table(("POOL", "CIDRS", "ALLOCATED", "(RECOMPUTED)", "FREE", "(RECOMPUTED)", "CAPACITY",
                    "ROUTED", "READY"), rows), ""]
    source = "live from the cloud" if report["cloudRead"] else "as last reported in pool status"
    parts += [f"Route tables ({source}):", render_tables(report["routeTables"]), ""]
    if report.get("cloudError"):
        parts += [f"Cloud not read: {report['cloudError']}", ""]
    without = report["nodesWithoutRoutes"]
    if without:
        rows = [(n["name"], ",".join(n["podCIDRs"]), n["reason"], _short(n["message"])) for n in without]
        parts += [f"Nodes without routes ({len(without)}):",
                  table(("NODE", "POD CIDR", "WHY", "MESSAGE"), rows), ""]
    if report["warnings"]:
        parts += [render_warnings(report["warnings"]), ""]
    if report["recentWarningEvents"]:
        rows = [(e["time"], e["object"], e["reason"], e["count"], _short(e["message"])[:120])
                for e in report["recentWarningEvents"]]
        parts += ["Recent warning events:", table(("TIME", "OBJECT", "REASON", "COUNT", "MESSAGE"), rows), ""]
    s = report["summary"]
    parts.append(f"{s['nodes']} nodes, {s['routed']} routed, {s['withoutRoute']} without route, "
                 f"{s['pools']} pool(s), {s['warnings']} warning(s).")
    return "\n".join(parts)
