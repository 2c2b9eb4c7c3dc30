"""Watch streams of the Kubernetes API emulator: initial events or a resume from a resourceVersion (410 when
compacted), label/field selectors with ADDED/DELETED as objects enter or leave the selection, bookmarks
(``k8s.io/initial-events-end`` for sendInitialEvents), timeoutSeconds, and the Table form.

The store calls the stream's listener synchronously on every change the watch gate lets through
(:mod:`routectl.sim.kube_watchgate`); the stream writes newline-delimited JSON events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping

import aiohttp.web

from routectl.sim import kube_table
from routectl.sim.kube_route import Route, as_served
from routectl.sim.kube_select import parse_field_selector, parse_label_selector
from routectl.sim.kube_store import ApiError, Change, Obj, ResourceType, Store, bad_request

BOOKMARK_INTERVAL = 30.0  # seconds between BOOKMARK events on idle watches that allow them


async def serve_watch(raw: aiohttp.web.BaseRequest, store: Store, rt: ResourceType, route: Route,
                      params: Mapping[str, str], closing: Callable[[], bool]) -> aiohttp.web.StreamResponse:
    """Stream watch events of one resource until the client leaves, ``timeoutSeconds`` or ``closing()``."""
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
        return {"type": kind, "object": as_served(change.obj, route)} if kind else None

    as_table = kube_table.wants_table(raw.headers.get("Accept", ""))
    columns = rt.printer_columns.get(route.version)

    def shaped(event: Obj) -> Obj:
        if not as_table or event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
            return event
        table = kube_table.table([event["object"]], columns, rt.plural, str(store.rv))
        return {"type": event["type"], "object": table}

    since_raw = params.get("resourceVersion") or ""
    send_initial = params.get("sendInitialEvents") == "true"
    bookmarks = params.get("allowWatchBookmarks") == "true"
    timeout = float(params.get("timeoutSeconds") or 0) or None
    events: list[Obj] = []
    if since_raw in ("", "0") or send_initial:
        events = [{"type": "ADDED", "object": as_served(o, route)} for o in store.list(rt, ns, matches)]
        if send_initial:
            events.append(_bookmark(store, rt, route, initial_end=True))
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

    response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
    store.listeners.add(listener)
    try:
        await response.prepare(raw)
        for event in events:
            await _write_event(response, shaped(event))
        if events and events[-1]["type"] == "ERROR":
            return response
        deadline = time.monotonic() + timeout if timeout else None
        last_write = time.monotonic()
        transport = raw.transport
        while not closing() and (deadline is None or time.monotonic() < deadline):
            if transport is None or transport.is_closing():
                break
            try:
                change = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                if bookmarks and time.monotonic() - last_write > BOOKMARK_INTERVAL:
                    await _write_event(response, _bookmark(store, rt, route))
                    last_write = time.monotonic()
                continue
            event = translate(change)
            if event is not None:
                await _write_event(response, shaped(event))
                last_write = time.monotonic()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response
    except (ConnectionError, RuntimeError):  # the client went away mid-write: just stop streaming
        return response
    finally:
        store.listeners.discard(listener)


def _bookmark(store: Store, rt: ResourceType, route: Route, initial_end: bool = False) -> Obj:
    meta: Obj = {"resourceVersion": str(store.rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": rt.kind, "apiVersion": route.api_version, "metadata": meta}
    return {"type": "BOOKMARK", "object": obj}


async def _write_event(response: aiohttp.web.StreamResponse, event: Obj) -> None:
    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
