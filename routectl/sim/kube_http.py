"""The HTTP face of the Kubernetes API emulator: an aiohttp handler that logs each request, applies injected
faults, and dispatches get/list/watch/create/update/patch/delete/deletecollection to the :class:`Store`.

Plain aiohttp (``aiohttp.web.Server(emulator)``): the object semantics live in :mod:`kube_store`, watches in
:mod:`kube_watch`, discovery in :mod:`kube_discovery`. An unexpected exception is answered as a 500
Status (and logged) rather than a dropped connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from routectl.sim import kube_table
from routectl.sim.kube_discovery import discovery, openapi_v3
from routectl.sim.kube_faults import Faults
from routectl.sim.kube_log import RequestLog, RequestRecord
from routectl.sim.kube_route import Route, as_served, parse_route, verb_of
from routectl.sim.kube_select import SelectorError, parse_field_selector, parse_label_selector
from routectl.sim.kube_store import ApiError, Obj, ResourceType, Store, bad_request
from routectl.sim.kube_watch import serve_watch

log = logging.getLogger(__name__)
WATCH = ("true", "1")


def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                                content_type="application/json")


@dataclass
class KubeEmulator:
    """The request handler: every Kubernetes request is served by ``store`` (call it on one event loop)."""

    store: Store = field(default_factory=Store)
    log: RequestLog = field(default_factory=RequestLog)
    faults: Faults = field(default_factory=Faults)
    address: str = "127.0.0.1:0"
    closing: bool = False

    async def __call__(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Entry point from aiohttp: log, inject faults, dispatch, and answer errors as Status objects."""
        path = request.path
        route = parse_route(path)
        method = request.method.upper()
        params: Mapping[str, str] = request.query
        verb, status = verb_of(method, route, params), 500
        record = RequestRecord(
            method=method, path=path, verb=verb,
            group=route.group if route else None, version=route.version if route else None,
            resource=route.plural if route else None, subresource=route.subresource if route else None,
            namespace=route.namespace if route else None, name=route.name if route else None,
            status=0, user_agent=request.headers.get("User-Agent", ""),
            content_type=request.headers.get("Content-Type", ""), time=time.time(), query=dict(params))
        self.log.add(record)
        try:
            if route is not None and route.plural is not None:
                fault = self.faults.check(verb, route, record.user_agent)
                if fault is not None:
                    if fault.delay > 0:
                        await asyncio.sleep(fault.delay)
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    raise ApiError(fault.code, fault.reason, fault.message, headers=headers)
            response = await self._dispatch(request, method, path, route)
            status = response.status
            return response
        except ApiError as e:
            status = e.code
            response = _json(e.status(), e.code)
            response.headers.update(e.headers)
            return response
        except SelectorError as e:
            status = 400
            return _json(bad_request(str(e)).status(), 400)
        except Exception as e:  # an emulator bug: a Status 500 rather than a dropped connection
            log.exception("the Kubernetes API emulator failed on %s %s", method, path)
            return _json(ApiError(500, "InternalError", f"emulator error: {e!r}").status(), 500)
        finally:
            record.status = status

    # ------------------------------------------------------------------------------------ routing
    async def _dispatch(self, request: aiohttp.web.BaseRequest, method: str, path: str,
                        route: Route | None) -> aiohttp.web.StreamResponse:
        if route is None or route.plural is None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")
            if path.rstrip("/") in ("/healthz", "/readyz", "/livez"):
                return aiohttp.web.Response(text="ok")
            if path.startswith("/openapi/v3"):
                return _json(openapi_v3(self.store, path))
            return _json(discovery(self.store, path, route, self.address))
        rt = self.store.resolve(route.group, route.version, route.plural)
        ns = route.namespace if rt.namespaced else None
        if rt.namespaced and route.namespace is None and method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} needs a namespace in the URL for {rt.plural}")
        if not rt.namespaced and route.namespace is not None:
            raise ApiError(404, "NotFound", f"{rt.plural} is cluster-scoped, not in namespaces ({path})")
        params: Mapping[str, str] = request.query
        if params.get("dryRun"):
            raise bad_request("dryRun is not emulated by routectl's Kubernetes API emulator")
        fv = params.get("fieldValidation", "")
        body = await self._body(request, method)
        as_table = kube_table.wants_table(request.headers.get("Accept", ""))
        store = self.store
        if route.name is None:
            if method == "GET" and params.get("watch") in WATCH:
                return await serve_watch(request, store, rt, route, params, lambda: self.closing)
            if method == "GET":
                listed = self._list(rt, route, params)
                if as_table:
                    table = self._table(rt, route, listed["items"])
                    table["metadata"] = listed["metadata"]
                    return _json(table)
                return _json(listed)
            if method == "POST":
                return _json(as_served(store.create(rt, ns, body, fv), route), 201)
            if method == "DELETE":
                return _json(self._delete_collection(rt, route, params, body))
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if route.subresource not in (None, "status"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                           f"({rt.plural}/{route.subresource})")
        if method == "GET" and params.get("watch") in WATCH:
            one = {**params, "fieldSelector": f"metadata.name={route.name}"}
            return await serve_watch(request, store, rt, route, one, lambda: self.closing)
        if method == "GET":
            if route.subresource == "status" and not rt.status_subresource:
                raise ApiError(404, "NotFound", f"{rt.plural} has no status subresource")
            obj = as_served(store.get(rt, ns, route.name), route)
            return _json(self._table(rt, route, [obj]) if as_table else obj)
        if method == "PUT":
            return _json(as_served(store.update(rt, ns, route.name, body, route.subresource, fv), route))
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            patched = store.patch(rt, ns, route.name, ctype, body, route.subresource, fv)
            return _json(as_served(patched, route))
        if method == "DELETE":
            if route.subresource is not None:
                raise ApiError(405, "MethodNotAllowed", "DELETE is not allowed on a subresource")
            return _json(as_served(store.delete(rt, ns, route.name, body), route))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")

    @staticmethod
    async def _body(request: aiohttp.web.BaseRequest, method: str) -> Any:
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            return None
        raw = await request.read()
        if not raw:
            if method == "DELETE":
                return None
            raise bad_request("the request body is empty")
        try:
            return json.loads(raw)
        except ValueError:
            ctype = request.headers.get("Content-Type", "")
            if "yaml" in ctype:
                raise ApiError(415, "UnsupportedMediaType", f"{ctype} bodies are not emulated") from None
            raise bad_request("the request body is not valid JSON") from None

    # ------------------------------------------------------------------------------------- list
    def _list(self, rt: ResourceType, route: Route, params: Mapping[str, str]) -> Obj:
        ns = route.namespace if rt.namespaced else None
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"), rt.plural)
        items = self.store.list(rt, ns, lambda o: labels(o) and fields(o))
        start = 0
        if params.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(params["continue"]).decode())
                start = int(token["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("invalid continue token") from None
        meta: Obj = {"resourceVersion": str(self.store.rv)}
        limit = int(params.get("limit") or 0)
        if limit > 0 and start + limit < len(items):
            token = json.dumps({"start": start + limit}).encode()
            meta["continue"] = base64.urlsafe_b64encode(token).decode()
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start:start + limit]
        else:
            items = items[start:]
        return {"kind": f"{rt.kind}List", "apiVersion": route.api_version, "metadata": meta,
                "items": [as_served(o, route) for o in items]}

    def _table(self, rt: ResourceType, route: Route, items: list[Obj]) -> Obj:
        return kube_table.table(items, rt.printer_columns.get(route.version), rt.plural, str(self.store.rv))

    def _delete_collection(self, rt: ResourceType, route: Route, params: Mapping[str, str], body: Any) -> Obj:
        ns = route.namespace if rt.namespaced else None
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"), rt.plural)
        items = self.store.list(rt, ns, lambda o: labels(o) and fields(o))
        done = [self.store.delete(rt, o["metadata"].get("namespace"), o["metadata"]["name"], body)
                for o in items]
        return {"kind": f"{rt.kind}List", "apiVersion": route.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": done}
