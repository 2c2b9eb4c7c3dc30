"""Server-side ``Table`` rendering (what ``kubectl get`` asks for), including CRD printer columns.

Pure: a small JSONPath subset (``.a.b``, ``.a[0]``, ``.a[*].b``, ``.a[?(@.k=="v")].b``) and the
``meta.k8s.io/v1`` Table shape, so ``kubectl get pcp`` shows the columns the CRD declares.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

Obj = dict[str, Any]
_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\*\]"
                    r"|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Every value the path selects (empty when nothing matches or the path is outside the subset)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None:
            return []
        pos = m.end()
        key, index, fkey, fval = m.groups()
        nxt: list[Any] = []
        for v in values:
            if key is not None and isinstance(v, dict) and key in v:
                nxt.append(v[key])
            elif index is not None and isinstance(v, list) and int(index) < len(v):
                nxt.append(v[int(index)])
            elif m.group(0) == "[*]" and isinstance(v, list):
                nxt.extend(v)
            elif fkey is not None and isinstance(v, list):
                nxt.extend(i for i in v if isinstance(i, dict) and str(_dig(i, fkey)) == fval)
        values = nxt
    return values


def _dig(obj: Obj, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's short age (``42s``, ``5m``, ``3h``, ``2d``) for an RFC 3339 timestamp."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    secs = max(0, int(((now or datetime.datetime.now(tz=datetime.UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _cell(values: list[Any], kind: str) -> Any:
    if not values:
        return None
    if kind == "date":
        return age(str(values[0]))
    if len(values) == 1 and not isinstance(values[0], (dict, list)):
        return values[0]
    return ",".join(v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for v in values)


def default_columns(plural: str) -> list[Obj]:
    """Columns for built-in kinds (a subset of kubectl's): Name, a status where useful, Age."""
    cols = [{"name": "Name", "type": "string", "format": "name", "jsonPath": ".metadata.name"}]
    if plural == "nodes":
        ready = '.status.conditions[?(@.type=="Ready")].status'
        cols += [{"name": "Status", "type": "string", "jsonPath": ready},
                 {"name": "PodCIDRs", "type": "string", "jsonPath": ".spec.podCIDRs"}]
    if plural == "namespaces":
        cols.append({"name": "Status", "type": "string", "jsonPath": ".status.phase"})
    return [*cols, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def table(objs: list[Obj], columns: list[Obj] | None, plural: str, resource_version: str) -> Obj:
    """A ``meta.k8s.io/v1`` Table with one row per object and PartialObjectMetadata for each row."""
    if columns:
        cols = [{"name": "Name", "type": "string", "format": "name", "jsonPath": ".metadata.name"}, *columns]
        if not any(c.get("type") == "date" for c in columns):
            cols.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    else:
        cols = default_columns(plural)
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [{"name": c["name"], "type": c.get("type", "string"),
                               "format": c.get("format", ""), "description": c.get("description", ""),
                               "priority": c.get("priority", 0)} for c in cols],
        "rows": [{"cells": [_cell(jsonpath(o, c["jsonPath"]), c.get("type", "string")) for c in cols],
                  "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o.get("metadata", {})}} for o in objs],
    }


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for the Table form (kubectl get does; clients do not)."""
    return "as=Table" in accept
