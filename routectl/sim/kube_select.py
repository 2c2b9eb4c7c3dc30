"""Pure label- and field-selector parsing and matching with kube-apiserver's semantics.

Label selectors: ``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, comma-joined
(``!=`` and ``notin`` also match objects without the key, as upstream). Field selectors: ``f=v``, ``f==v``,
``f!=v`` over a per-resource allow-list; an unsupported field is a 400, as upstream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_LABEL_TOKEN = re.compile(r"\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|"
                          r"\s(in|notin)\s*\(([^)]*)\))?\s*(?:,|$)")

# Fields every resource supports, plus per-resource extras (subset of upstream's field label conversions).
COMMON_FIELDS = ("metadata.name", "metadata.namespace")
RESOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "status.phase", "status.podIP", "status.nominatedNodeName"),
    "events": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    "nodes": ("spec.unschedulable",),
    "namespaces": ("status.phase",),
    "secrets": ("type",),
}


class SelectorError(ValueError):
    """A selector string that cannot be parsed or names an unsupported field (answered as 400)."""


def parse_label_selector(text: str | None) -> Predicate:
    """Compile a label selector into a predicate over an object's ``metadata.labels``."""
    text = (text or "").strip()
    if not text:
        return lambda _obj: True
    reqs: list[Callable[[Mapping[str, str]], bool]] = []
    pos = 0
    while pos < len(text):
        m = _LABEL_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"unable to parse requirement in label selector {text!r} at {pos}")
        pos = m.end()
        neg, key, op, value, setop, values = m.groups()
        if neg and (op or setop):
            raise SelectorError(f"invalid label selector {text!r}: '!' only applies to a bare key")
        reqs.append(_label_requirement(key, neg == "!", op, value, setop, values))

    def predicate(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req(labels) for req in reqs)

    return predicate


def _label_requirement(key: str, negated: bool, op: str | None, value: str | None,
                       setop: str | None, values: str | None) -> Callable[[Mapping[str, str]], bool]:
    if setop:
        members = {v.strip() for v in (values or "").split(",") if v.strip()}
        if not members:
            raise SelectorError(f"label selector for {key!r}: '{setop}' needs at least one value")
        if setop == "in":
            return lambda labels: key in labels and labels[key] in members
        return lambda labels: key not in labels or labels[key] not in members
    if op in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if op == "!=":
        return lambda labels: labels.get(key) != value
    if negated:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """Resolve a dotted field path to the string kube compares against ('' when absent)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return "false" if path == "spec.unschedulable" else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, Mapping) and path == "source":
        return str(cur.get("component", ""))
    return str(cur)


def parse_field_selector(text: str | None, plural: str) -> Predicate:
    """Compile a field selector for a resource; unsupported fields raise :class:`SelectorError`."""
    text = (text or "").strip()
    if not text:
        return lambda _obj: True
    allowed = set(COMMON_FIELDS) | set(RESOURCE_FIELDS.get(plural, ()))
    reqs: list[tuple[str, bool, str]] = []
    for term in text.split(","):
        term = term.strip()
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)", term)
        if m is None:
            raise SelectorError(f"invalid field selector term {term!r}")
        field, op, value = m.groups()
        if field not in allowed:
            raise SelectorError(f'field label not supported: {field} (for {plural})')
        reqs.append((field, op != "!=", value.strip()))

    def predicate(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, f) == v) == eq for f, eq, v in reqs)

    return predicate
