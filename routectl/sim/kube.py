"""Kubernetes API emulator over real HTTP on 127.0.0.1, for kopf, the official client and kubectl.

A small strict subclass of kmock 0.8's ``KubernetesEmulator`` (pinned: it overrides the private ``_handle``):
kmock still provides the request object, its request list and the rendering of unexpected failures,
while the object semantics come from :mod:`routectl.sim.kube_store` (resourceVersion, 409/422, status
split, finalizers, namespaces, CRDs), :mod:`~routectl.sim.kube_patch`, :mod:`~routectl.sim.kube_select`,
:mod:`~routectl.sim.kube_schema` and :mod:`~routectl.sim.kube_table`. :class:`KubeServer` hosts it in its
own thread and event loop, writes a kubeconfig and offers thread-safe helpers.
Standalone: ``python -m routectl.sim.kube --port P --kubeconfig FILE [--crd crds/podcidrpool.yaml]``.

Emulated: discovery (/api, /apis, groups, APIResourceList with subresources, /version, /healthz,
a skeletal /openapi/v3), get/list/watch/create/update(PUT)/patch(merge, JSON, strategic)/delete/
deletecollection on core v1 nodes, namespaces, pods, events, configmaps, coordination.k8s.io leases,
events.k8s.io events, CRDs and every custom resource they declare; label and field selectors on list and
watch (with ADDED/DELETED when an object enters/leaves a selection), watch resume from a resourceVersion
(410 when compacted), bookmarks, timeoutSeconds, sendInitialEvents; limit/continue paging; the Table form
with printer columns; fieldValidation=Strict for custom resources; fault injection; a request log.

CRDs' CEL ``x-kubernetes-validations`` are evaluated (:mod:`~routectl.sim.kube_cel`); watch events can be
held back, delayed and reordered per object on request (:mod:`~routectl.sim.kube_watchgate`).

NOT emulated: authentication/authorization/admission webhooks, server-side apply (415), dryRun (400),
CRD version conversion (objects are served as stored), managedFields,
garbage collection of ownerReferences, pod/node controllers (nothing sets Ready or evicts), graceful pod
deletion, protobuf, the legacy /api/v1/watch paths, persistence across emulator restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import os
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from routectl.sim import kube_table
from routectl.sim.kube_select import SelectorError, parse_field_selector, parse_label_selector
from routectl.sim.kube_store import ApiError, Change, Obj, ResourceType, Store, bad_request
from routectl.sim.kube_watchgate import Target, WatchDelay, WatchHold

T = TypeVar("T")

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
BOOKMARK_INTERVAL = 30.0  # seconds between BOOKMARK events on idle watches that allow them
SERVER_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-routectl-sim",
                  "platform": "linux/amd64", "gitCommit": "0" * 40,
                  "gitTreeState": "clean",
                  "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc"}


@dataclass
class RequestRecord:
    """One HTTP request as the emulator understood it (for assertions such as "no Node writes").

    Logged when the request arrives; ``status`` is 0 until the answer is known (a live watch stays 0).
    """

    method: str
    path: str
    verb: str  # get/list/watch/create/update/patch/delete/deletecollection/discovery/other
    group: str | None
    version: str | None
    resource: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    user_agent: str
    content_type: str
    time: float
    query: dict[str, str] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        """Whether the verb changes state (create/update/patch/delete/deletecollection)."""
        return self.verb in WRITE_VERBS


class RequestLog:
    """Thread-safe, bounded log of requests with counters; read it from any thread."""

    def __init__(self, maxlen: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._maxlen = maxlen
        self._dropped = 0

    def add(self, record: RequestRecord) -> None:
        """Append a record, dropping the older half when the log is full."""
        with self._lock:
            self._records.append(record)
            if len(self._records) > self._maxlen:
                drop = len(self._records) - self._maxlen // 2
                del self._records[:drop]
                self._dropped += drop

    def mark(self) -> int:
        """A position to pass to :meth:`select` as ``since`` (e.g. taken right before a restart)."""
        with self._lock:
            return self._dropped + len(self._records)

    def clear(self) -> None:
        """Forget every record (marks taken before stay valid)."""
        with self._lock:
            self._dropped += len(self._records)
            self._records.clear()

    def select(self, *, verb: str | None = None, resource: str | None = None, subresource: str | None = "*",
               name: str | None = None, namespace: str | None = None, writes: bool = False,
               since: int = 0, user_agent: str | None = None) -> list[RequestRecord]:
        """Records matching every given filter; ``subresource="*"`` means any, ``None`` the main resource."""
        with self._lock:
            start = max(0, since - self._dropped)
            records = self._records[start:]
        return [r for r in records
                if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
                and (subresource == "*" or r.subresource == subresource)
                and (name is None or r.name == name) and (namespace is None or r.namespace == namespace)
                and (not writes or r.is_write)
                and (user_agent is None or user_agent.lower() in r.user_agent.lower())]

    def count(self, **filters: Any) -> int:
        """How many records match (same filters as :meth:`select`)."""
        return len(self.select(**filters))

    def counters(self, since: int = 0) -> Counter[tuple[str, str | None, str | None]]:
        """Counts per (verb, resource, subresource)."""
        return Counter((r.verb, r.resource, r.subresource) for r in self.select(since=since))

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Any:
        with self._lock:
            return iter(list(self._records))


@dataclass(frozen=True)
class _Route:
    group: str
    version: str
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


def _parse_route(path: str) -> _Route | None:
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
    return _Route(group, version, rest[0], namespace, rest[1], rest[2])


def _verb(method: str, route: _Route | None, params: Any) -> str:
    """The Kubernetes verb of a request (what RBAC and audit logs would call it)."""
    if route is None or route.plural is None:
        return "discovery" if method == "GET" else "other"
    watch = params.get("watch") in ("true", "1")
    if route.name is None:
        return {"GET": "watch" if watch else "list", "POST": "create",
                "DELETE": "deletecollection"}.get(method, "other")
    return {"GET": "watch" if watch else "get", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete"}.get(method, "other")


@dataclass
class Fault:
    """An injected failure: matching requests are answered ``code`` (``times`` times, or always if None),
    after ``delay`` seconds (a hung API call); ``user_agent`` limits it to clients whose agent contains it."""

    verb: str | None = None
    resource: str | None = None
    subresource: str | None = "*"
    name: str | None = None
    namespace: str | None = None
    code: int = 500
    reason: str = "InternalError"
    message: str = "injected fault"
    times: int | None = 1
    retry_after: int | None = None
    hits: int = 0
    user_agent: str | None = None
    delay: float = 0.0

    def matches(self, verb: str, route: _Route, user_agent: str = "") -> bool:
        """Whether a request with this verb, route (and User-Agent) is targeted by the fault."""
        return ((self.verb is None or self.verb == verb)
                and (self.user_agent is None or self.user_agent.lower() in user_agent.lower())
                and (self.resource is None or self.resource == route.plural)
                and (self.subresource == "*" or self.subresource == route.subresource)
                and (self.name is None or self.name == route.name)
                and (self.namespace is None or self.namespace == route.namespace))


def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                                content_type="application/json")


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator made strict: every Kubernetes request is served by a :class:`Store`."""

    store: Store = attrs.field(factory=Store)
    log: RequestLog = attrs.field(factory=RequestLog)
    faults: list[Fault] = attrs.field(factory=list)
    faults_lock: threading.Lock = attrs.field(factory=threading.Lock)
    address: str = "127.0.0.1:0"
    closing: bool = False

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Entry point from aiohttp: build kmock's Request without kmock's K8s path parsing.

        kmock 0.8's parser fails on some valid paths (e.g. ``/api/v1/namespaces``), and the K8s routing
        here is our own (:func:`_parse_route`), so only the HTTP parts of the request are filled in.
        """
        body = await raw_request.read()
        request = rendering.Request(
            id=len(self._requests), raw_request=raw_request, url=raw_request.url, method=raw_request.method,
            params=dict(raw_request.query), headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies), body=body, text=body.decode("utf-8", "replace"))
        if len(self._requests) > 2_000:  # kmock keeps every request with its body; keep it bounded
            del self._requests[:1_000]
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as e:  # an emulator bug: answer a Status 500 rather than dropping the connection
            return await self._render_error(e)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        path = raw.path if raw is not None else str(request.url.path)
        route = _parse_route(path)
        method = str(request.method.value if request.method else "").upper()
        verb, status = _verb(method, route, request.params), 500
        record = RequestRecord(
            method=method, path=path, verb=verb,
            group=route.group if route else None, version=route.version if route else None,
            resource=route.plural if route else None, subresource=route.subresource if route else None,
            namespace=route.namespace if route else None, name=route.name if route else None,
            status=0, user_agent=request.headers.get("User-Agent", ""),
            content_type=request.headers.get("Content-Type", ""), time=time.time(),
            query=dict(request.params))
        self.log.add(record)
        try:
            if route is not None and route.plural is not None:
                fault = self._check_faults(verb, route, record.user_agent)
                if fault is not None:
                    if fault.delay > 0:
                        await asyncio.sleep(fault.delay)
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    raise ApiError(fault.code, fault.reason, fault.message, headers=headers)
            response = await self._dispatch(request, path, route)
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
        finally:
            record.status = status

    def _check_faults(self, verb: str, route: _Route, user_agent: str = "") -> Fault | None:
        with self.faults_lock:
            for fault in self.faults:
                live = fault.times is None or fault.hits < fault.times
                if live and fault.matches(verb, route, user_agent):
                    fault.hits += 1
                    return fault
        return None

    # ------------------------------------------------------------------------------------ routing
    async def _dispatch(self, request: rendering.Request, path: str,
                        route: _Route | None) -> aiohttp.web.StreamResponse:
        method = str(request.method.value if request.method else "").upper()
        if route is None or route.plural is None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")
            if path.rstrip("/") in ("/healthz", "/readyz", "/livez"):
                return aiohttp.web.Response(text="ok")
            if path.startswith("/openapi/v3"):
                return _json(self._openapi_v3(path))
            return _json(self._discovery(path, route))
        rt = self.store.resolve(route.group, route.version, route.plural)
        ns = route.namespace if rt.namespaced else None
        if rt.namespaced and route.namespace is None and method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} needs a namespace in the URL for {rt.plural}")
        if not rt.namespaced and route.namespace is not None:
            raise ApiError(404, "NotFound", f"{rt.plural} is cluster-scoped, not in namespaces ({path})")
        params = request.params
        if params.get("dryRun"):
            raise bad_request("dryRun is not emulated by routectl's Kubernetes API emulator")
        fv = params.get("fieldValidation", "")
        body = self._body(request, method)
        as_table = kube_table.wants_table(request.headers.get("Accept", ""))
        if route.name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                return await self._watch(request, rt, route, params)
            if method == "GET":
                listed = self._list(rt, route, params)
                if as_table:
                    table = self._table(rt, route, listed["items"])
                    table["metadata"] = listed["metadata"]
                    return _json(table)
                return _json(listed)
            if method == "POST":
                return _json(self._out(self.store.create(rt, ns, body, fv), route), 201)
            if method == "DELETE":
                return _json(self._delete_collection(rt, route, params, body))
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if route.subresource not in (None, "status"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                           f"({rt.plural}/{route.subresource})")
        if method == "GET" and params.get("watch") in ("true", "1"):
            params = {**params, "fieldSelector": f"metadata.name={route.name}"}
            return await self._watch(request, rt, route, params)
        if method == "GET":
            if route.subresource == "status" and not rt.status_subresource:
                raise ApiError(404, "NotFound", f"{rt.plural} has no status subresource")
            obj = self._out(self.store.get(rt, ns, route.name), route)
            return _json(self._table(rt, route, [obj]) if as_table else obj)
        if method == "PUT":
            return _json(self._out(
                self.store.update(rt, ns, route.name, body, route.subresource, fv), route))
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            return _json(self._out(
                self.store.patch(rt, ns, route.name, ctype, body, route.subresource, fv), route))
        if method == "DELETE":
            if route.subresource is not None:
                raise ApiError(405, "MethodNotAllowed", "DELETE is not allowed on a subresource")
            result = self.store.delete(rt, ns, route.name, body)
            return _json(self._out(result, route))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")

    @staticmethod
    def _body(request: rendering.Request, method: str) -> Any:
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            return None
        if not request.body:
            if method == "DELETE":
                return None
            raise bad_request("the request body is empty")
        try:
            return json.loads(request.body)
        except ValueError:
            ctype = request.headers.get("Content-Type", "")
            if "yaml" in ctype:
                raise ApiError(415, "UnsupportedMediaType", f"{ctype} bodies are not emulated") from None
            raise bad_request("the request body is not valid JSON") from None

    @staticmethod
    def _out(obj: Obj, route: _Route) -> Obj:
        """The object as served at the requested version (no conversion: only apiVersion is rewritten)."""
        api_version = f"{route.group}/{route.version}" if route.group else route.version
        if obj.get("apiVersion") == api_version:
            return obj
        return {**obj, "apiVersion": api_version}

    # ----------------------------------------------------------------------------------- list/watch
    def _list(self, rt: ResourceType, route: _Route, params: Any) -> Obj:
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
        api_version = f"{route.group}/{route.version}" if route.group else route.version
        return {"kind": f"{rt.kind}List", "apiVersion": api_version, "metadata": meta,
                "items": [self._out(o, route) for o in items]}

    def _table(self, rt: ResourceType, route: _Route, items: list[Obj]) -> Obj:
        return kube_table.table(items, rt.printer_columns.get(route.version), rt.plural, str(self.store.rv))

    def _delete_collection(self, rt: ResourceType, route: _Route, params: Any, body: Any) -> Obj:
        ns = route.namespace if rt.namespaced else None
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"), rt.plural)
        items = self.store.list(rt, ns, lambda o: labels(o) and fields(o))
        done = [self.store.delete(rt, o["metadata"].get("namespace"), o["metadata"]["name"], body)
                for o in items]
        api_version = f"{route.group}/{route.version}" if route.group else route.version
        return {"kind": f"{rt.kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": done}

    async def _watch(self, request: rendering.Request, rt: ResourceType, route: _Route,
                     params: Any) -> aiohttp.web.StreamResponse:
        ns = route.namespace if rt.namespaced else None
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"), rt.plural)

        def matches(obj: Obj | None) -> bool:
            return obj is not None and (ns is None or obj["metadata"].get("namespace") == ns) \
                and labels(obj) and fields(obj)

        def translate(change: Change) -> Obj | None:
            now, before = matches(change.obj), matches(change.old)
            kind = change.type
            if kind == "MODIFIED":
                kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else ""
            elif not now:
                kind = ""
            return {"type": kind, "object": self._out(change.obj, route)} if kind else None

        as_table = kube_table.wants_table(request.headers.get("Accept", ""))

        def shaped(event: Obj) -> Obj:
            if not as_table or event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                return event
            return {"type": event["type"], "object": self._table(rt, route, [event["object"]])}

        since_raw = params.get("resourceVersion") or ""
        send_initial = params.get("sendInitialEvents") == "true"
        bookmarks = params.get("allowWatchBookmarks") == "true"
        timeout = float(params.get("timeoutSeconds") or 0) or None
        events: list[Obj] = []
        store = self.store
        if since_raw in ("", "0") or send_initial:
            events = [{"type": "ADDED", "object": self._out(o, route)} for o in store.list(rt, ns, matches)]
            if send_initial:
                events.append(self._bookmark(rt, route, initial_end=True))
        else:
            try:
                since = int(since_raw)
            except ValueError:
                raise bad_request(f"invalid resourceVersion {since_raw!r}") from None
            if since < store.history_floor:
                events = [{"type": "ERROR", "object": ApiError(
                    410, "Expired", f"too old resource version: {since} ({store.history_floor})").status()}]
            else:
                events = [e for e in (translate(c) for c in store.changes_since(since, rt.key)) if e]

        queue: asyncio.Queue[Change] = asyncio.Queue()

        def listener(change: Change) -> None:
            if change.key == rt.key:
                queue.put_nowait(change)

        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        store.listeners.add(listener)
        try:
            await response.prepare(request._raw_request)
            for event in events:
                await self._write_event(response, shaped(event))
            if events and events[-1]["type"] == "ERROR":
                return response
            deadline = time.monotonic() + timeout if timeout else None
            last_write = time.monotonic()
            transport = request._raw_request.transport
            while not self.closing and (deadline is None or time.monotonic() < deadline):
                if transport is None or transport.is_closing():
                    break
                try:
                    change = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    if bookmarks and time.monotonic() - last_write > BOOKMARK_INTERVAL:
                        await self._write_event(response, self._bookmark(rt, route))
                        last_write = time.monotonic()
                    continue
                event = translate(change)
                if event is not None:
                    await self._write_event(response, shaped(event))
                    last_write = time.monotonic()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
            return response
        except (ConnectionError, RuntimeError):  # the client went away mid-write: just stop streaming
            return response
        finally:
            store.listeners.discard(listener)

    def _bookmark(self, rt: ResourceType, route: _Route, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(self.store.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        api_version = f"{route.group}/{route.version}" if route.group else route.version
        return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": api_version, "metadata": meta}}

    @staticmethod
    async def _write_event(response: aiohttp.web.StreamResponse, event: Obj) -> None:
        await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    # ------------------------------------------------------------------------------------ discovery
    def _discovery(self, path: str, route: _Route | None) -> Obj:
        types = list(self.store.types.values())
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
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}]}
        groups: dict[str, list[str]] = {}
        for rt in types:
            if rt.group:
                for v in rt.versions:
                    if v not in groups.setdefault(rt.group, []):
                        groups[rt.group].append(v)
        if clean == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self._group(g, vs) for g, vs in sorted(groups.items())]}
        segs = clean.strip("/").split("/")
        if len(segs) == 2 and segs[0] == "apis":
            if segs[1] not in groups:
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({clean})")
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(segs[1], groups[segs[1]])}
        if route is not None and route.plural is None:
            served = [rt for rt in types if rt.group == route.group and route.version in rt.versions]
            if not served and (route.group, route.version) != ("", "v1"):
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({clean})")
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": f"{route.group}/{route.version}" if route.group else route.version,
                    "resources": [r for rt in sorted(served, key=lambda t: t.plural) for r in self._rows(rt)]}
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({clean})")

    def _openapi_v3(self, path: str) -> Obj:
        """A skeletal OpenAPI v3: enough for kubectl to see server-side field validation on every kind.

        No component schemas are served, so kubectl falls back to merge patches for custom resources and
        to its built-in types for the core ones (``kubectl explain`` does not work).
        """
        gvs: dict[str, list[ResourceType]] = {}
        for rt in self.store.types.values():
            for v in rt.versions:
                gvs.setdefault(f"apis/{rt.group}/{v}" if rt.group else f"api/{v}", []).append(rt)
        wanted = path.removeprefix("/openapi/v3").strip("/")
        if not wanted:
            tag = f"{len(self.store.types):x}{self.store.rv:x}"
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

    @staticmethod
    def _group(group: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    @staticmethod
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


def kubeconfig_text(url: str, name: str = "routectl-sim") -> str:
    """A kubeconfig for the emulator: plain HTTP, no auth (both kopf's login and the client accept it)."""
    return (f"apiVersion: v1\nkind: Config\npreferences: {{}}\n"
            f"clusters:\n- name: {name}\n  cluster:\n    server: {url}\n"
            f"users:\n- name: {name}\n  user: {{}}\n"
            f"contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n"
            f"    namespace: default\n"
            f"current-context: {name}\n")


class KubeServer:
    """Runs a :class:`KubeEmulator` on 127.0.0.1 in a background thread with its own event loop.

    Use as a context manager or with :meth:`start` / :meth:`stop`. The helpers (``create``, ``get`` ...)
    are thread-safe: they run on the emulator's loop and bypass HTTP (so they are not in ``requests``).
    Call them from any thread except the emulator's own.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", kubeconfig_path: str | None = None,
                 history_size: int = 10_000) -> None:
        self.host = host
        self._requested_port = port
        self._kubeconfig_path = kubeconfig_path
        self._own_kubeconfig_dir: str | None = None
        self.emulator = KubeEmulator(store=Store(history_size=history_size))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self) -> KubeServer:
        """Bind, start serving and write the kubeconfig; returns self once requests are accepted."""
        if self._thread is not None:
            raise RuntimeError("KubeServer already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(512)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        self.emulator.address = f"{self.host}:{self._port}"
        self._thread = threading.Thread(target=self._run, args=(sock,), name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._error is not None:
            raise RuntimeError("the Kubernetes API emulator failed to start") from self._error
        if self._kubeconfig_path is None:
            self._own_kubeconfig_dir = tempfile.mkdtemp(prefix="routectl-kube-")
            self._kubeconfig_path = os.path.join(self._own_kubeconfig_dir, "kubeconfig")
        with open(self._kubeconfig_path, "w", encoding="utf-8") as f:
            f.write(kubeconfig_text(self.url))
        return self

    def stop(self) -> None:
        """Close every watch, stop serving and join the thread (idempotent)."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self.emulator.closing = True
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        self._thread = None
        if self._own_kubeconfig_dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._own_kubeconfig_dir, "kubeconfig"))
                os.rmdir(self._own_kubeconfig_dir)

    def __enter__(self) -> KubeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as e:  # surfaced to start() or logged by the thread machinery
            self._error = e
            self._ready.set()
            raise
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        async with self.emulator:
            server = aiohttp.web.Server(self.emulator, handler_cancellation=True, access_log=None)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
            await runner.setup()
            site = aiohttp.web.SockSite(runner, sock)
            await site.start()
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

    # ------------------------------------------------------------------------------------ properties
    @property
    def port(self) -> int:
        """The TCP port actually bound (useful when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("KubeServer not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the API server URL, no TLS, no auth."""
        return f"http://{self.host}:{self.port}"

    @property
    def kubeconfig_path(self) -> str:
        """Where the kubeconfig for this server was written."""
        if self._kubeconfig_path is None:
            raise RuntimeError("KubeServer not started")
        return self._kubeconfig_path

    @property
    def requests(self) -> RequestLog:
        """The HTTP request log (helpers' direct calls are not in it)."""
        return self.emulator.log

    @property
    def store(self) -> Store:
        """The store itself; touch it only through :meth:`call` from other threads."""
        return self.emulator.store

    # -------------------------------------------------------------------------------------- helpers
    def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the emulator's loop and return a deep copy of its result."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("KubeServer not started")
        if threading.current_thread() is self._thread:
            raise RuntimeError("KubeServer helpers cannot be called from the emulator's own thread")

        async def run() -> T:
            return copy.deepcopy(fn(self.emulator.store))

        coro: Coroutine[Any, Any, T] = run()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the emulator's loop (directly when already there) and return its result as is."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("KubeServer not started")
        if threading.current_thread() is self._thread:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    # ---------------------------------------------------------------------------- watch lag on demand
    def hold_watch(self, resource: str, name: str | None = None, namespace: str | None = None,
                   group: str | None = None) -> WatchHold:
        """Hold back the watch events of one object (or of every object of ``resource`` when ``name`` is
        None) until ``handle.release(order="fifo"|"reverse"|"shuffled", seed=...)``.

        The store still commits at once (GET/LIST see the change); only watch streams wait. Each object's
        own events keep resourceVersion order (as one real watch stream does) while objects overtake each
        other; see :mod:`routectl.sim.kube_watchgate` for the full semantics and the stale-snapshot option.
        """
        target = Target(resource, name, namespace, group)
        return self._on_loop(lambda: self.store.gate.hold(target, self._on_loop))

    def delay_watch(self, resource: str, max_delay: float, *, seed: int, min_delay: float = 0.0,
                    name: str | None = None, namespace: str | None = None,
                    group: str | None = None) -> WatchDelay:
        """Delay every watch event of the targeted objects by a random ``min_delay..max_delay`` seconds,
        drawn independently per object from ``seed`` (reproducible: ``handle.delays(name)``); per-object
        order is kept. ``handle.stop()`` ends it."""
        target = Target(resource, name, namespace, group)
        return self._on_loop(lambda: self.store.gate.delay(target, min_delay, max_delay, seed, self._on_loop))

    def release_watches(self) -> int:
        """Release every hold, stop every delay and deliver every queued watch event now (for quiescence)."""
        return self._on_loop(self.store.gate.release_all)

    def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        """Create an object (apiVersion and kind taken from it); raises :class:`ApiError` like HTTP would."""
        def do(s: Store) -> Obj:
            rt = s.find_type(obj["apiVersion"], obj["kind"])
            return s.create(rt, namespace or (obj.get("metadata") or {}).get("namespace"), obj)
        return self.call(do)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        """Fetch one object; raises :class:`ApiError` (code 404) when absent."""
        return self.call(lambda s: s.get(s.find_type(api_version, kind), namespace, name))

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Whether the object exists (including while it waits for its finalizers)."""
        try:
            self.get(api_version, kind, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return False
            raise
        return True

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        """List objects with the same selector semantics as the HTTP API."""
        def do(s: Store) -> list[Obj]:
            rt = s.find_type(api_version, kind)
            labels = parse_label_selector(label_selector)
            fields = parse_field_selector(field_selector, rt.plural)
            return s.list(rt, namespace, lambda o: labels(o) and fields(o))
        return self.call(do)

    def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
              content_type: str = "application/merge-patch+json", subresource: str | None = None) -> Obj:
        """Patch the main resource (merge patch by default; .status ignored where it is a subresource)."""
        return self.call(lambda s: s.patch(s.find_type(api_version, kind), namespace, name, content_type,
                                           patch, subresource))

    def patch_status(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                     content_type: str = "application/merge-patch+json") -> Obj:
        """Patch through /status (only .status changes), e.g. to play the kubelet."""
        return self.patch(api_version, kind, name, patch, namespace, content_type, subresource="status")

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        """Delete (or mark for deletion when finalizers remain)."""
        return self.call(lambda s: s.delete(s.find_type(api_version, kind), namespace, name))

    def inject_fault(self, verb: str | None = None, resource: str | None = None, *, code: int = 500,
                     times: int | None = 1, subresource: str | None = "*", name: str | None = None,
                     namespace: str | None = None, reason: str | None = None, message: str = "injected fault",
                     retry_after: int | None = None, user_agent: str | None = None,
                     delay: float = 0.0) -> Fault:
        """Answer matching HTTP requests with an error Status (e.g. 500, 429 + Retry-After, 409) ``times``
        times, after ``delay`` seconds (a hung call), only for clients whose User-Agent contains
        ``user_agent`` when given; the returned :class:`Fault` counts its ``hits``. Nothing is changed
        in the store."""
        default_reason = {409: "Conflict", 429: "TooManyRequests", 503: "ServiceUnavailable",
                          500: "InternalError", 404: "NotFound", 403: "Forbidden"}.get(code, "InternalError")
        fault = Fault(verb=verb, resource=resource, subresource=subresource, name=name, namespace=namespace,
                      code=code, reason=reason or default_reason, message=message, times=times,
                      retry_after=retry_after, user_agent=user_agent, delay=delay)
        with self.emulator.faults_lock:
            self.emulator.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self.emulator.faults_lock:
            self.emulator.faults.clear()

    def install_kopf_peering_crds(self) -> None:
        """Install kopf's ClusterKopfPeering and KopfPeering CRDs (kopf.dev/v1), for non-standalone kopf."""
        for kind, scope in (("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")):
            plural = f"{kind.lower()}s"
            self.install_crd({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.kopf.dev"},
                "spec": {"group": "kopf.dev", "scope": scope,
                         "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                         "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                             "openAPIV3Schema": {"type": "object",
                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}})

    def install_crd(self, crd: Obj) -> Obj:
        """Create (or replace the spec of) a CustomResourceDefinition; its resource is servable at once."""
        def do(s: Store) -> Obj:
            rt = s.find_type("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            name = (crd.get("metadata") or {}).get("name", "")
            if (None, name) in s.objects[rt.key]:
                return s.patch(rt, None, name, "application/merge-patch+json", {"spec": crd.get("spec")})
            return s.create(rt, None, crd)
        return self.call(do)


def main(argv: list[str] | None = None) -> int:
    """``python -m routectl.sim.kube``: serve until SIGTERM/SIGINT; prints one JSON line with the URL."""
    parser = argparse.ArgumentParser(prog="python -m routectl.sim.kube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig")
    parser.add_argument("--crd", action="append", default=[], help="CRD YAML file(s) to install at start")
    args = parser.parse_args(argv)
    import yaml

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with KubeServer(port=args.port, host=args.host, kubeconfig_path=args.kubeconfig) as server:
        for path in args.crd:
            with open(path, encoding="utf-8") as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        server.install_crd(doc)
        print(json.dumps({"url": server.url, "kubeconfig": server.kubeconfig_path}), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
