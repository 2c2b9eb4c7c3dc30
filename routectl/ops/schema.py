"""JSON schemas (draft 2020-12) of the documented, stable output shapes: `routectl simulate -o json`
(SIMULATE_SCHEMA), `routectl plan -o json` (PLAN_SCHEMA) and `routectl status -o json` (STATUS_SCHEMA).

Version 1. Adding a field is compatible; renaming, removing or retyping one bumps `schemaVersion`.
docs/simulate-json.md describes the fields in prose; tests validate real outputs against these.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NSTR = {"type": ["string", "null"]}
_NINT = {"type": ["integer", "null"]}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    req = required if required is not None else list(props)
    return {"type": "object", "properties": props, "required": req}


CONDITION = _obj({"type": _STR, "status": _STR, "reason": _STR, "message": _STR})
NETWORK_UNAVAILABLE = _obj({"status": {"enum": ["True", "False", "Unknown"]}, "reason": _STR,
                            "message": _STR})
ROUTE = _obj({"table": _STR, "destination": _STR, "nextHop": _NSTR, "state": _STR})
NODE = _obj({"name": _STR, "podCIDRs": {"type": "array", "items": _STR},
             "routes": {"type": "array", "items": ROUTE}, "networkUnavailable": NETWORK_UNAVAILABLE,
             "transport": {"enum": ["overlay"]}}, ["name", "podCIDRs", "routes", "networkUnavailable"])
POOL = _obj({"name": _STR, "cidrs": {"type": "array", "items": _STR}, "nodeMaskSizeIPv4": _NINT,
             "nodeSelector": {"type": "object", "additionalProperties": _STR},
             "allocated": _NINT, "free": _NINT, "capacity": _NINT, "routesProgrammed": _NINT,
             "conditions": {"type": "array", "items": CONDITION},
             "routeLimitFallback": {"enum": ["None", "Overlay"]}, "routedNodes": _NINT,
             "overlayNodes": _NINT},
            ["name", "cidrs", "nodeMaskSizeIPv4", "nodeSelector", "allocated", "free", "capacity",
             "routesProgrammed", "conditions"])
# note: why the limit is not the quota's (learned from the cloud's refusal, quota unreadable), else ""
ROUTE_TABLE = _obj({"id": _STR, "used": _INT, "limit": _INT, "free": _INT, "quota": _STR, "note": _STR})
WARNING_KINDS = ["RouteLimitReached", "RouteLimitNearing", "Exhausted", "Invalid", "InUse"]
WARNING = _obj({"kind": {"enum": WARNING_KINDS}, "pool": _NSTR, "table": _NSTR, "used": _NINT, "limit": _NINT,
                "refused": _INT, "message": _STR, "advice": {"type": "array", "items": _STR}})
SUMMARY = _obj({"nodes": _INT, "withPodCIDR": _INT, "routed": _INT, "withoutRoute": _INT, "warnings": _INT,
                "working": _INT, "overlay": _INT},
               ["nodes", "withPodCIDR", "routed", "withoutRoute", "warnings"])

SIMULATE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "routectl simulate report",
    **_obj({
        "schemaVersion": {"const": 1},
        "kind": {"const": "SimulationReport"},
        "cloud": {"enum": ["aws", "gce"]},
        "converged": {"type": "boolean"},
        "failure": _NSTR,
        "elapsedSeconds": {"type": "number", "minimum": 0},
        "settings": _obj({"nodes": _INT, "poolCIDR": _STR, "mask": _INT, "routeLimit": _NINT,
                          "timeout": {"type": "number"}, "overflow": {"enum": ["overlay"]}},
                         ["nodes", "poolCIDR", "mask", "routeLimit", "timeout"]),
        "pools": {"type": "array", "items": POOL},
        "nodes": {"type": "array", "items": NODE},
        "routeTables": {"type": "array", "items": ROUTE_TABLE},
        "warnings": {"type": "array", "items": WARNING},
        "summary": SUMMARY,
    }),
}

ACTION = _obj({"kind": {"enum": ["create", "replace", "delete", "keep"]}, "table": _STR, "destination": _STR,
               "node": _NSTR, "nextHop": _NSTR, "currentNextHop": _NSTR, "routeName": _NSTR})
TABLE_PLAN = _obj({"id": _STR, "create": _INT, "replace": _INT, "delete": _INT, "keep": _INT, "refused": _INT,
                   "usedBefore": _INT, "usedAfter": _INT, "limit": _INT, "headroomAfter": _INT,
                   "headroomAfterWaitingNodes": _INT, "quota": _STR})
WAITING = _obj({"node": _STR, "pool": _NSTR, "podCIDRs": {"type": "array", "items": _STR}, "problem": _NSTR})
NODE_PROBLEM = _obj({"node": _STR, "reason": _STR, "message": _STR})
FINDING = _obj({"node": _STR, "cidr": _STR, "kind": _STR, "message": _STR})

PLAN_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "routectl plan report",
    **_obj({
        "schemaVersion": {"const": 1},
        "kind": {"const": "RoutePlan"},
        "cloud": {"enum": ["aws", "gce"]},
        "tables": {"type": "array", "items": TABLE_PLAN},
        "actions": {"type": "array", "items": ACTION},
        "keep": {"type": "array", "items": ACTION},
        "refused": {"type": "array", "items": ACTION},
        "waitingNodes": {"type": "array", "items": WAITING},
        "nodeProblems": {"type": "array", "items": NODE_PROBLEM},
        "ipamFindings": {"type": "array", "items": FINDING},
        "warnings": {"type": "array", "items": WARNING},
        "cloudCalls": {"type": "object", "additionalProperties": _INT},
        "summary": _obj({"create": _INT, "replace": _INT, "delete": _INT, "keep": _INT, "refused": _INT,
                         "waitingNodes": _INT, "nodeProblems": _INT, "changes": _INT}),
    }),
}

USAGE = {"type": ["object", "null"], "properties": {"allocated": _INT, "free": _INT, "capacity": _INT},
         "required": ["allocated", "free", "capacity"]}
NODE_WITHOUT_ROUTE = _obj({"name": _STR, "podCIDRs": {"type": "array", "items": _STR},
                           "networkUnavailable": NETWORK_UNAVAILABLE,
                           "routes": {"type": "array", "items": ROUTE}, "reason": _STR, "message": _STR})


def _extend(base: dict[str, Any], **props: Any) -> dict[str, Any]:
    """`base` object schema with more required properties."""
    return {**base, "properties": {**base["properties"], **props}, "required": [*base["required"], *props]}


EVENT = _obj({"time": _STR, "object": _STR, "reason": _STR, "message": _STR, "count": _INT})

STATUS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "routectl status report",
    **_obj({
        "schemaVersion": {"const": 1},
        "kind": {"const": "Status"},
        "cloud": {"enum": ["aws", "gce", None]},
        "cloudRead": {"type": "boolean"},
        "cloudError": _NSTR,
        "pools": {"type": "array", "items": _extend(POOL, recomputed=USAGE)},
        "routeTables": {"type": "array",
                        "items": _extend(ROUTE_TABLE, source={"enum": ["cloud", "poolStatus"]})},
        "nodesWithoutRoutes": {"type": "array", "items": NODE_WITHOUT_ROUTE},
        "warnings": {"type": "array", "items": WARNING},
        "recentWarningEvents": {"type": "array", "items": EVENT},
        "ipamFindings": {"type": "array", "items": FINDING},
        "summary": _obj({"nodes": _INT, "routed": _INT, "withoutRoute": _INT, "pools": _INT,
                         "warnings": _INT}),
    }),
}
