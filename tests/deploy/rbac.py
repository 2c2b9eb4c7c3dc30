"""A small RBAC authorizer over rendered manifests: would this ServiceAccount be allowed this request?

It follows kube-apiserver's RBAC rules for what deploy/ uses: ClusterRoles bound cluster-wide, Roles
bound in their namespace, apiGroups/resources("res/sub")/verbs, and resourceNames (which never match a
create, whose name is not part of the request URL, nor a request without a name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Attributes:
    """The authorisation attributes of one resource request."""

    verb: str
    group: str
    resource: str  # "nodes" or "nodes/status"
    namespace: str  # "" for cluster-scoped requests
    name: str  # "" when the URL names no object


@dataclass(frozen=True)
class Grant:
    """One rule of one role, expanded: the scope it applies in and what it allows."""

    namespace: str | None  # None: everywhere (ClusterRole via ClusterRoleBinding)
    group: str
    resource: str
    verb: str
    name: str  # "" = any name


def attributes(record: Any) -> Attributes | None:
    """RBAC attributes of an emulator RequestRecord; None for discovery (allowed to every user)."""
    if record.verb == "discovery":
        return None
    if record.resource is None:
        raise ValueError(f"cannot authorise non-resource request {record.method} {record.path}")
    resource = record.resource + (f"/{record.subresource}" if record.subresource else "")
    return Attributes(record.verb, record.group or "", resource, record.namespace or "", record.name or "")


def grants_for(objs: list[Obj], namespace: str, account: str) -> set[Grant]:
    """Every grant the ServiceAccount namespace/account holds through the rendered bindings."""
    roles = {(o["kind"], (o["metadata"].get("namespace") or ""), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("Role", "ClusterRole")}
    out: set[Grant] = set()
    for binding in objs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account
                   and s.get("namespace") == namespace for s in binding.get("subjects") or []):
            continue
        ref = binding["roleRef"]
        bound_ns = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        role_ns = (bound_ns or "") if ref["kind"] == "Role" else ""
        role = roles[(ref["kind"], role_ns, ref["name"])]
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        for name in rule.get("resourceNames") or [""]:
                            out.add(Grant(bound_ns, group, resource, verb, name))
    return out


def matching(grants: set[Grant], attrs: Attributes) -> set[Grant]:
    """The grants that allow `attrs` (empty: forbidden)."""
    out = set()
    for g in grants:
        if g.namespace is not None and g.namespace != attrs.namespace:
            continue  # a Role allows nothing outside its namespace, nor cluster-scoped requests
        if g.group not in (attrs.group, "*") or g.resource not in (attrs.resource, "*"):
            continue
        if g.verb not in (attrs.verb, "*"):
            continue
        if g.name and (attrs.verb == "create" or g.name != attrs.name):
            continue
        out.add(g)
    return out
