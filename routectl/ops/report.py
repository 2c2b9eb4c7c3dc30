"""Pure report builders: Kubernetes objects, listed cloud routes, capacities, limit warnings -> plain dicts.

These dicts ARE the documented JSON shapes of `routectl simulate`, `plan` and `status` (see
routectl.ops.schema and docs/simulate-json.md); the table renderer reads the same dicts, so the text and
JSON outputs can never disagree. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from routectl.cloud.limits import OVERLAY_HINT
from routectl.constants import (
    CONDITION_NETWORK_UNAVAILABLE,
    POOL_EXHAUSTED,
    POOL_INVALID,
    POOL_READY,
    POOL_ROUTE_LIMIT_NEARING,
    POOL_ROUTE_LIMIT_REACHED,
    TRANSPORT_ANNOTATION,
)
from routectl.routes.fallback import REASON_ROUTE_OVERLAY, switch_already_on
from routectl.routes.model import CloudRoute, LimitWarning, TableCapacity, node_pod_cidrs
from routectl.routes.model import canonical_or_raw as canon

SCHEMA_VERSION = 1
Obj = Mapping[str, Any]



def name_of(obj: Obj) -> str:
    """metadata.name of an object."""
    return str((obj.get("metadata") or {}).get("name", ""))


def pod_cidrs(node: Obj) -> list[str]:
    """Node.spec.podCIDRs (or the single podCIDR of older objects)."""
    return list(node_pod_cidrs(node))


def find_condition(obj: Obj, ctype: str) -> dict[str, Any] | None:
    """The status condition of type `ctype`, or None."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def network_unavailable(node: Obj) -> dict[str, str]:
    """{status, reason, message} of the node's NetworkUnavailable condition ("Unknown" when absent)."""
    c = find_condition(node, CONDITION_NETWORK_UNAVAILABLE)
    if c is None:
        return {"status": "Unknown", "reason": "", "message": "no NetworkUnavailable condition"}
    return {"status": str(c.get("status", "Unknown")), "reason": str(c.get("reason", "")),
            "message": str(c.get("message", ""))}


def detail_reason(condition: Mapping[str, str]) -> str:
    """The specific reason routectl puts first in a NoRouteCreated message ("RouteLimitReached: ..."), else
    the condition's reason."""
    head, sep, _ = condition.get("message", "").partition(": ")
    if sep and head.isidentifier() and head[:1].isupper():
        return head
    return condition.get("reason", "")


def routes_by_destination(routes: Iterable[CloudRoute]) -> dict[str, list[CloudRoute]]:
    """Owned routes grouped by canonical destination."""
    out: dict[str, list[CloudRoute]] = {}
    for r in routes:
        if r.owned:
            out.setdefault(canon(r.destination), []).append(r)
    return out


def node_entry(node: Obj, by_dest: Mapping[str, list[CloudRoute]]) -> dict[str, Any]:
    """One node: name, podCIDRs, its routes in every table, its NetworkUnavailable condition."""
    cidrs = pod_cidrs(node)
    routes = [{"table": r.table, "destination": canon(r.destination), "nextHop": r.target, "state": r.state}
              for c in cidrs for r in sorted(by_dest.get(canon(c), []), key=lambda r: r.table)]
    entry = {"name": name_of(node), "podCIDRs": cidrs, "routes": routes,
             "networkUnavailable": network_unavailable(node)}
    transport = ((node.get("metadata") or {}).get("annotations") or {}).get(TRANSPORT_ANNOTATION)
    if transport:
        entry["transport"] = transport  # "overlay": the node's route did not fit (routeLimitFallback)
    return entry


def pool_entry(pool: Obj) -> dict[str, Any]:
    """One PodCIDRPool: spec essentials and the status the controller wrote."""
    spec = pool.get("spec") or {}
    status = pool.get("status") or {}
    return {
        "name": name_of(pool),
        "cidrs": list(spec.get("cidrs") or []),
        "nodeMaskSizeIPv4": spec.get("nodeMaskSizeIPv4"),
        "nodeSelector": dict(spec.get("nodeSelector") or {}),
        "allocated": status.get("allocated"),
        "free": status.get("free"),
        "capacity": status.get("capacity"),
        "routesProgrammed": status.get("routesProgrammed"),
        **({"routeLimitFallback": spec["routeLimitFallback"], "routedNodes": status.get("routedNodes"),
            "overlayNodes": status.get("overlayNodes")} if spec.get("routeLimitFallback") else {}),
        "conditions": [{k: str(c.get(k, "")) for k in ("type", "status", "reason", "message")}
                       for c in status.get("conditions") or []],
    }


def table_entry(cap: TableCapacity) -> dict[str, Any]:
    """One route table (AWS) or the project's route quota (GCE): used / limit / free, and the quota's name."""
    return {"id": cap.display_id, "used": cap.used, "limit": cap.limit, "free": cap.free,
            "quota": cap.quota_name, "note": cap.note}


def limit_advice(cap: TableCapacity | None, needed: int, *, fallback_on: bool = False) -> list[str]:
    """Both ways out of a route limit: raise the quota (which, to what) or use an overlay network; with
    `fallback_on` (the pool already has routeLimitFallback: Overlay) only the quota, which routes the
    nodes now riding the overlay."""
    overlay = [] if fallback_on else [OVERLAY_HINT.removeprefix("or ")]
    if cap is None:
        return ["raise the cloud's route quota", *overlay]
    return [f"raise {cap.quota_name} to at least {needed} ({cap.raise_to_hint})", *overlay]


def limit_warning_entry(w: LimitWarning, caps: Mapping[str, TableCapacity], *,
                        fallback_on: bool = False) -> dict[str, Any]:
    """A route-limit warning from the planner, structured, with its advice (`fallback_on`: every pool has
    routeLimitFallback: Overlay already, so neither message nor advice suggest it)."""
    kind = POOL_ROUTE_LIMIT_REACHED if w.kind == "reached" else POOL_ROUTE_LIMIT_NEARING
    needed = w.needed if w.kind == "reached" and w.needed > w.limit else w.limit + 1
    message = switch_already_on(w.message) if fallback_on else w.message
    return {"kind": kind, "pool": None, "table": w.table, "used": w.used, "limit": w.limit,
            "refused": w.refused, "message": message,
            "advice": limit_advice(caps.get(w.table), needed, fallback_on=fallback_on)}


def pool_advice(kind: str, pool: str) -> list[str]:
    """What to do about a pool condition."""
    if kind == POOL_EXHAUSTED:
        return [f"append a CIDR to spec.cidrs of PodCIDRPool {pool} (CIDRs are append-only)",
                "create another PodCIDRPool whose nodeSelector matches the waiting nodes"]
    if kind == POOL_INVALID:
        return [f"fix the spec of PodCIDRPool {pool} as the message says; existing allocations stay"]
    if kind == "InUse":
        return ["drain and delete the listed nodes, or keep the pool"]
    return []


def pool_warning_entries(pools: Iterable[Obj], *, with_limits: bool) -> list[dict[str, Any]]:
    """Warnings a pool's status raises: Exhausted, Invalid, InUse (deletion blocked) and, when the cloud
    was not read (`with_limits`), RouteLimitReached/Nearing as the controller last reported them."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for p in pools:
        name = name_of(p)
        for kind in (POOL_EXHAUSTED, POOL_INVALID):
            c = find_condition(p, kind)
            if c and c.get("status") == "True":
                out.append(_pool_warning(kind, name, str(c.get("message", ""))))
        ready = find_condition(p, POOL_READY)
        if ready and ready.get("status") == "False" and ready.get("reason") == "InUse":
            out.append(_pool_warning("InUse", name, str(ready.get("message", ""))))
        if with_limits:
            for kind in (POOL_ROUTE_LIMIT_REACHED, POOL_ROUTE_LIMIT_NEARING):
                c = find_condition(p, kind)
                msg = str((c or {}).get("message", ""))
                if c and c.get("status") == "True" and (kind, msg) not in seen and \
                        not (kind == POOL_ROUTE_LIMIT_NEARING and (POOL_ROUTE_LIMIT_REACHED, msg) in seen):
                    seen.add((kind, msg))
                    entry = _pool_warning(kind, name, msg)
                    entry["advice"] = limit_advice(
                        None, 0, fallback_on=(p.get("spec") or {}).get("routeLimitFallback") == "Overlay")
                    out.append(entry)
    return out


def _pool_warning(kind: str, pool: str, message: str) -> dict[str, Any]:
    return {"kind": kind, "pool": pool, "table": None, "used": None, "limit": None, "refused": 0,
            "message": message, "advice": pool_advice(kind, pool)}


def warnings(limit_warnings: Sequence[LimitWarning] | None, caps: Sequence[TableCapacity],
             pools: Iterable[Obj]) -> list[dict[str, Any]]:
    """Every warning: the planner's route-limit warnings (live) plus the pools' own warning conditions.

    `limit_warnings` None means the cloud was not read: the pools' RouteLimit conditions stand in.
    """
    pools = list(pools)
    by_table = {c.display_id: c for c in caps}  # warnings name the capacity (table, or table/family)
    all_overlay = bool(pools) and all((p.get("spec") or {}).get("routeLimitFallback") == "Overlay"
                                      for p in pools)
    out = [limit_warning_entry(w, by_table, fallback_on=all_overlay) for w in limit_warnings or []]
    return out + pool_warning_entries(pools, with_limits=limit_warnings is None)


def summary(nodes: Sequence[Mapping[str, Any]], warning_list: Sequence[Any]) -> dict[str, int]:
    """Counts: nodes, with a podCIDR, routed (NetworkUnavailable False), unrouted, warnings."""
    with_cidr = sum(1 for n in nodes if n["podCIDRs"])
    working = sum(1 for n in nodes if n["networkUnavailable"]["status"] == "False")
    overlay = sum(1 for n in nodes if n["networkUnavailable"]["status"] == "False"
                  and n["networkUnavailable"]["reason"] == REASON_ROUTE_OVERLAY)
    out = {"nodes": len(nodes), "withPodCIDR": with_cidr, "routed": working - overlay,
           "withoutRoute": len(nodes) - working, "warnings": len(warning_list)}
    if overlay or any("transport" in n for n in nodes):  # only with the overlay fallback: as before otherwise
        out.update(working=working, overlay=overlay)
    return out


def simulate_report(*, cloud: str, converged: bool, elapsed: float, failure: str | None,
                    nodes: Iterable[Obj], pools: Iterable[Obj], routes: Iterable[CloudRoute],
                    caps: Sequence[TableCapacity], limit_warnings: Sequence[LimitWarning] | None,
                    settings: Mapping[str, Any]) -> dict[str, Any]:
    """The `routectl simulate` result (schema version 1; see routectl.ops.schema.SIMULATE_SCHEMA)."""
    pools = list(pools)
    by_dest = routes_by_destination(routes)
    node_list = [node_entry(n, by_dest) for n in sorted(nodes, key=name_of)]
    warns = warnings(limit_warnings, caps, pools)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "kind": "SimulationReport",
        "cloud": cloud,
        "converged": converged,
        "failure": failure,
        "elapsedSeconds": round(elapsed, 3),
        "settings": dict(settings),
        "pools": [pool_entry(p) for p in sorted(pools, key=name_of)],
        "nodes": node_list,
        "routeTables": [table_entry(c) for c in caps],
        "warnings": warns,
        "summary": summary(node_list, warns),
    }
