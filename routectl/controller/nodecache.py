"""The controller's informer: every Node (and PodCIDRPool) from ONE paginated LIST, then a WATCH of its own.

Replaces kopf for Nodes: kopf indexes the initial listing one object at a time, makes every handler wait
until the index is complete (readiness bookkeeping that grows as N^2: 241 s at 5,000 Nodes), and runs
its per-event machinery (diffs, progress, per-object workers) on every kubelet heartbeat. Here start-up
costs one LIST (pages of `page_size`): every existing podCIDR is known and occupied before the first
block is handed out. Then `run()` watches from the LIST's resourceVersion (bookmarks on) and hands each
newer version to a callback, which the controller dispatches per object (routectl.controller.dispatch).

Ordering is settled by resourceVersion, whatever feeds the cache (the watch, a re-LIST after 410 Gone,
or our own write's response through `apply()`): an older version never replaces a newer one, a
deleted object is remembered (name -> deletion version) so an older body never resurrects it, and an
object absent from a LIST newer than its version is not re-added. After 410 Gone the re-LIST is diffed
against the cache: what vanished is handed on as DELETED, what changed as MODIFIED.

The cache is a `Mapping[str, View]`, read live by the Controller (O(1) look-ups, no copy per event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

from routectl.constants import GROUP, POOL_PLURAL, VERSION
from routectl.controller.kube import ApiError, KubeClient
from routectl.controller.state import NodeView, PoolView

log = logging.getLogger(__name__)

NODES_PATH = "/api/v1/nodes"
POOLS_PATH = f"/apis/{GROUP}/{VERSION}/{POOL_PLURAL}"
TOMBSTONES = 20000  # deletions remembered (oldest forgotten first): far more than can race a write


class View(Protocol):
    """What the cache needs of a view: its key and version."""

    @property
    def name(self) -> str: ...

    @property
    def resource_version(self) -> str: ...


V = TypeVar("V", bound=View)
OnEvent = Callable[[str, Any], None]  # (ADDED | MODIFIED | DELETED, view): must not block


def _rv(value: str) -> int | None:
    """An etcd resourceVersion as an integer (None when it is not one: then ordering is unknown)."""
    return int(value) if value.isdigit() else None


def _older(rv: str, than: str) -> bool:
    """True only when both versions are integers and `rv` is strictly older."""
    a, b = _rv(rv), _rv(than)
    return a is not None and b is not None and a < b


class Expired(Exception):
    """The watch cannot resume from our resourceVersion (410 Gone): only a new LIST can."""


class ObjectCache(Mapping[str, V], Generic[V]):
    """Name -> newest view of every object of one collection (module docstring)."""

    def __init__(self, client: KubeClient, path: str, parse: Callable[[Mapping[str, Any]], V], *,
                 page_size: int = 500, retry_max: float = 30.0, watch_seconds: int = 300) -> None:
        self.client = client
        self.path = path
        self.parse = parse
        self.page_size = page_size
        self.retry_max = retry_max
        self.watch_seconds = watch_seconds
        self._views: dict[str, V] = {}
        self._gone: dict[str, str] = {}  # deleted: name -> deletion resourceVersion
        self._list_rv = ""
        self.rv = ""  # newest resourceVersion seen (LIST, events, bookmarks): where a watch resumes
        self._loaded = asyncio.Event()
        self._lock = asyncio.Lock()
        self.lists = 0  # LIST requests made (pages), for tests and metrics
        self.watches = 0  # watch requests made

    # ----- Mapping -----
    def __getitem__(self, name: str) -> V:
        return self._views[name]

    def __contains__(self, name: object) -> bool:
        return name in self._views

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._views))  # a copy: callers await while iterating, events change the cache

    def __len__(self) -> int:
        return len(self._views)

    def values(self) -> list[V]:  # type: ignore[override]  # a snapshot: events change the cache
        """Every view now (a copy of the list, the views themselves are immutable)."""
        return list(self._views.values())

    @property
    def loaded(self) -> bool:
        """True once the first LIST is complete."""
        return self._loaded.is_set()

    # ----- loading -----
    async def ready(self) -> None:
        """Return once the first LIST is complete; the first caller makes it (retried on API errors)."""
        if self._loaded.is_set():
            return
        async with self._lock:
            delay = 0.5
            while not self._loaded.is_set():
                try:
                    self._merge(*await self._list())
                    self._loaded.set()
                    log.info("cache of %s: %d objects from %d LIST page(s)", self.path, len(self._views),
                             self.lists)
                except ApiError as exc:
                    log.warning("listing %s failed, retrying in %.1fs: %s", self.path, delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(self.retry_max, delay * 2)

    async def _list(self) -> tuple[list[V], str]:
        """Every object, page by page, and the resourceVersion of the (consistent) list."""
        views: list[V] = []
        token = ""
        list_rv = ""
        while True:
            params = {"limit": str(self.page_size)}
            if token:
                params["continue"] = token
            page = await self.client.request("GET", self.path, params=params)
            self.lists += 1
            meta = page.get("metadata") or {}
            list_rv = list_rv or str(meta.get("resourceVersion", ""))
            views += [self.parse(body) for body in page.get("items") or []]
            token = meta.get("continue") or ""
            if not token:
                return views, list_rv

    def _merge(self, views: list[V], list_rv: str) -> list[tuple[str, V]]:
        """Fold a complete LIST into the cache; the changes it made, as events (vanished: DELETED)."""
        changes: list[tuple[str, V]] = []
        listed = set()
        for view in views:
            listed.add(view.name)
            if self._put(view, listed=True):
                changes.append(("MODIFIED", view))
        for name in [n for n in self._views if n not in listed]:
            held = self._views[name]
            if _older(held.resource_version, list_rv):  # else: created after the LIST was served
                self._forget(name, list_rv)
                changes.append(("DELETED", held))
        self._list_rv = list_rv
        if not _older(list_rv, self.rv):
            self.rv = list_rv
        return changes

    # ----- events -----
    def apply(self, event_type: str | None, body: Mapping[str, Any]) -> V | None:
        """One version of an object (a watch event, or a write's response): the view when it changed the
        cache, None when it is older than what the cache knows."""
        view = self.parse(body)
        if event_type == "DELETED":
            held = self._views.get(view.name)
            if held is not None and _older(view.resource_version, held.resource_version):
                return None  # an older object's deletion: the newer one (re-created) stays
            if held is None and view.name in self._gone:
                return None
            self._forget(view.name, view.resource_version)
            return view
        return view if self._put(view) else None

    def _put(self, view: V, listed: bool = False) -> bool:
        """Keep `view` when it is newer than what the cache knows (a `listed` one exists for certain)."""
        held = self._views.get(view.name)
        if held is not None:
            if _older(view.resource_version, held.resource_version) or \
                    view.resource_version == held.resource_version:
                return False
        else:
            gone = self._gone.get(view.name)
            if gone is not None and not _older(gone, view.resource_version):
                return False  # deleted after this version was served: never resurrected
            if not listed and self._loaded.is_set() and _older(view.resource_version, self._list_rv):
                return False  # absent from a LIST newer than this version: deleted since
            self._gone.pop(view.name, None)
        self._views[view.name] = view
        return True

    def _forget(self, name: str, rv: str) -> None:
        self._views.pop(name, None)
        self._gone.pop(name, None)
        self._gone[name] = rv
        if len(self._gone) > TOMBSTONES:
            del self._gone[next(iter(self._gone))]

    # ----- watching -----
    async def run(self, on_event: OnEvent) -> None:
        """List (if not yet), then watch for ever, handing each change to `on_event` in the order the API
        made them; resumes from the newest resourceVersion, re-lists after 410 Gone."""
        await self.ready()
        delay = 0.5
        while True:
            try:
                await self._watch_once(on_event)
                delay = 0.5
            except Expired as exc:
                log.info("watch of %s expired (%s): listing again", self.path, exc)
                await self._relist(on_event)
            except ApiError as exc:
                if exc.status == 410:
                    await self._relist(on_event)
                    continue
                log.warning("watch of %s failed, resuming in %.1fs: %s", self.path, delay, exc)
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)
            except ValueError as exc:  # a line that is not JSON: a broken proxy; resume, never die
                log.warning("watch of %s sent garbage, resuming in %.1fs: %s", self.path, delay, exc)
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)

    async def _watch_once(self, on_event: OnEvent) -> None:
        self.watches += 1
        async for event in self.client.watch(self.path, self.rv, self.watch_seconds):
            etype = str(event.get("type") or "")
            obj = event.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    raise Expired(obj.get("message", "410 Gone"))
                raise ApiError(int(obj.get("code") or 0), str(obj.get("reason", "")), str(obj.get("message")))
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if rv and not _older(rv, self.rv):
                self.rv = rv
            if etype == "BOOKMARK":
                continue
            view = self.apply(etype, obj)
            if view is not None:
                on_event(etype, view)

    async def _relist(self, on_event: OnEvent) -> None:
        delay = 0.5
        while True:
            try:
                views, list_rv = await self._list()
                break
            except ApiError as exc:
                log.warning("listing %s failed, retrying in %.1fs: %s", self.path, delay, exc)
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)
        for etype, view in self._merge(views, list_rv):
            on_event(etype, view)


class NodeCache(ObjectCache[NodeView]):
    """Every Node, as NodeViews."""

    def __init__(self, client: KubeClient, page_size: int = 500, retry_max: float = 30.0,
                 watch_seconds: int = 300) -> None:
        super().__init__(client, NODES_PATH, NodeView.from_body, page_size=page_size, retry_max=retry_max,
                         watch_seconds=watch_seconds)


class PoolCache(ObjectCache[PoolView]):
    """Every PodCIDRPool, as PoolViews (a handful: the same informer keeps the code one)."""

    def __init__(self, client: KubeClient, page_size: int = 500, retry_max: float = 30.0,
                 watch_seconds: int = 300) -> None:
        super().__init__(client, POOLS_PATH, PoolView.from_body, page_size=page_size, retry_max=retry_max,
                         watch_seconds=watch_seconds)
