"""What a Kubernetes API request addresses: group, version, resource, namespace, name, subresource, verb.

Pure parsing of the URL path (``/api/v1/...``, ``/apis/<group>/<version>/...``) and of the method into the
verb RBAC and audit logs would name; plus the object as served at the requested version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Route:
    """The parts of a resource path (``plural`` is None for discovery paths such as ``/apis/g/v``)."""

    group: str
    version: str
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def api_version(self) -> str:
        """``group/version``, or the bare version for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version


def parse_route(path: str) -> Route | None:
    """The route of a resource or group-version path; None for anything else (``/version``, ``/healthz``)."""
    segs = [s for s in path.split("/") if s]
    if len(segs) >= 2 and segs[0] == "api":
        group, version, rest = "", segs[1], segs[2:]
    elif len(segs) >= 3 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    rest = rest + [None] * (3 - len(rest))  # type: ignore[list-item]
    return Route(group, version, rest[0], namespace, rest[1], rest[2])



def verb_of(method: str, route: Route | None, params: Mapping[str, str]) -> str:
    """The Kubernetes verb of a request (what RBAC and audit logs would call it)."""
    if route is None or route.plural is None:
        return "discovery" if method == "GET" else "other"
    watch = params.get("watch") in ("true", "1")
    if route.name is None:
        return {"GET": "watch" if watch else "list", "POST": "create",
                "DELETE": "deletecollection"}.get(method, "other")
    return {"GET": "watch" if watch else "get", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete"}.get(method, "other")



def as_served(obj: Obj, route: Route) -> Obj:
    """The object as served at the requested version (no conversion: only apiVersion is rewritten)."""
    if obj.get("apiVersion") == route.api_version:
        return obj
    return {**obj, "apiVersion": route.api_version}
