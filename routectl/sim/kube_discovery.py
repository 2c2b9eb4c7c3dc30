"""Discovery for the Kubernetes API emulator: /version, /, /api, /apis, APIGroup, APIResourceList and a
skeletal OpenAPI v3, all derived from the store's registry of served resources (CRDs included)."""

from __future__ import annotations

from routectl.sim.kube_route import Route
from routectl.sim.kube_store import ApiError, Obj, ResourceType, Store

SERVER_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-routectl-sim",
                  "platform": "linux/amd64", "gitCommit": "0" * 40,
                  "gitTreeState": "clean",
                  "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc"}


def discovery(store: Store, path: str, route: Route | None, address: str) -> Obj:
    """The discovery document served at ``path`` (404 for an unknown group or version)."""
    types = list(store.types.values())
    clean = "/" + path.strip("/")
    if clean == "/version":
        return SERVER_VERSION
    if clean == "/":
        paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/readyz", "/livez"}
        for rt in types:
            if rt.group:
                paths |= {f"/apis/{rt.group}", *(f"/apis/{rt.group}/{v}" for v in rt.versions)}
        return {"paths": sorted(paths)}
    if clean == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}
    groups: dict[str, list[str]] = {}
    for rt in types:
        if rt.group:
            for v in rt.versions:
                if v not in groups.setdefault(rt.group, []):
                    groups[rt.group].append(v)
    if clean == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group(g, vs) for g, vs in sorted(groups.items())]}
    segs = clean.strip("/").split("/")
    if len(segs) == 2 and segs[0] == "apis":
        if segs[1] not in groups:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({clean})")
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(segs[1], groups[segs[1]])}
    if route is not None and route.plural is None:
        served = [rt for rt in types if rt.group == route.group and route.version in rt.versions]
        if not served and (route.group, route.version) != ("", "v1"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({clean})")
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{route.group}/{route.version}" if route.group else route.version,
                "resources": [r for rt in sorted(served, key=lambda t: t.plural) for r in _rows(rt)]}
    raise ApiError(404, "NotFound", f"the server could not find the requested resource ({clean})")

def openapi_v3(store: Store, path: str) -> Obj:
    """A skeletal OpenAPI v3: enough for kubectl to see server-side field validation on every kind.

    No component schemas are served, so kubectl falls back to merge patches for custom resources and
    to its built-in types for the core ones (``kubectl explain`` does not work).
    """
    gvs: dict[str, list[ResourceType]] = {}
    for rt in store.types.values():
        for v in rt.versions:
            gvs.setdefault(f"apis/{rt.group}/{v}" if rt.group else f"api/{v}", []).append(rt)
    wanted = path.removeprefix("/openapi/v3").strip("/")
    if not wanted:
        tag = f"{len(store.types):x}{store.rv:x}"
        return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={tag}"}
                          for gv in sorted(gvs)}}
    if wanted not in gvs:
        raise ApiError(404, "NotFound", f"no OpenAPI document for {wanted}")
    paths: Obj = {}
    for rt in gvs[wanted]:
        version = wanted.rsplit("/", 1)[1]
        gvk = {"group": rt.group, "version": version, "kind": rt.kind}
        fv = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]

        def op(params: list[Obj], gvk: Obj = gvk) -> Obj:
            return {"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}}

        scope = "namespaces/{namespace}/" if rt.namespaced else ""
        base = f"/{wanted}/{scope}{rt.plural}"
        paths[base] = {"get": op([]), "post": op(fv)}
        paths[f"{base}/{{name}}"] = {"get": op([]), "put": op(fv), "patch": op(fv), "delete": op([])}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}


def _group(group: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def _rows(rt: ResourceType) -> list[Obj]:
    row: Obj = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                "kind": rt.kind, "verbs": rt.verbs()}
    if rt.short_names:
        row["shortNames"] = list(rt.short_names)
    if rt.categories:
        row["categories"] = list(rt.categories)
    rows = [row]
    if rt.status_subresource:
        rows.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                     "kind": rt.kind, "verbs": ["get", "patch", "update"]})
    return rows
