"""Every Node the controller knows, from ONE paginated LIST, then kept current by the operator's Node events.

Replaces kopf's `@kopf.index` for Nodes: kopf indexes the initial listing one object at a time and makes
every handler wait until the index is complete, with readiness bookkeeping that grows as N^2 (241 s before
a controller with 5,000 Nodes could act). Here start-up costs one LIST (pages of `page_size`): every
existing podCIDR is known and occupied before the first block is handed out, in about a second.

After the LIST, the same kopf event stream that drives the handlers feeds the cache (`apply()`, called in
the Node event handler before the Controller sees the event), so the cache is never behind an event being
handled, as kopf's index was not. Ordering across the two sources is settled by resourceVersion: an event
older than what the cache holds is ignored, an object absent from the LIST but older than it (deleted
before the LIST) is not resurrected, and a deletion seen while the LIST runs is not undone by it.

The cache is a `Mapping[str, NodeView]`, passed where the kopf index was: the Controller reads it live
(membership and look-ups in O(1), no copy per event), where a kopf index had to be copied per read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from routectl.controller.kube import ApiError, KubeClient
from routectl.controller.state import NodeView

log = logging.getLogger(__name__)

NODES_PATH = "/api/v1/nodes"


def _rv(value: str) -> int | None:
    """An etcd resourceVersion as an integer (None when it is not one: then ordering is unknown)."""
    return int(value) if value.isdigit() else None


def _older(rv: str, than: str) -> bool:
    """True only when both versions are integers and `rv` is strictly older."""
    a, b = _rv(rv), _rv(than)
    return a is not None and b is not None and a < b


class NodeCache(Mapping[str, NodeView]):
    """Node name -> its newest NodeView, loaded by one LIST and updated by `apply()` (module docstring)."""

    def __init__(self, client: KubeClient, page_size: int = 500, retry_max: float = 30.0) -> None:
        self.client = client
        self.page_size = page_size
        self.retry_max = retry_max
        self._views: dict[str, NodeView] = {}
        self._tombstones: dict[str, str] = {}  # deleted while the LIST ran: name -> deletion resourceVersion
        self._list_rv = ""
        self._loaded = asyncio.Event()
        self._lock = asyncio.Lock()
        self.lists = 0  # LIST requests made (pages), for tests and metrics

    # ----- Mapping -----
    def __getitem__(self, name: str) -> NodeView:
        return self._views[name]

    def __contains__(self, name: object) -> bool:
        return name in self._views

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._views))  # a copy: callers await while iterating, events change the cache

    def __len__(self) -> int:
        return len(self._views)

    @property
    def loaded(self) -> bool:
        """True once the LIST is complete."""
        return self._loaded.is_set()

    # ----- loading -----
    async def ready(self) -> None:
        """Return once the LIST is complete; the first caller makes it (retried on API errors)."""
        if self._loaded.is_set():
            return
        async with self._lock:
            delay = 0.5
            while not self._loaded.is_set():
                try:
                    await self._load()
                except ApiError as exc:
                    log.warning("listing Nodes failed, retrying in %.1fs: %s", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(self.retry_max, delay * 2)

    async def _load(self) -> None:
        items: list[dict[str, Any]] = []
        token = ""
        list_rv = ""
        while True:
            params = {"limit": str(self.page_size)}
            if token:
                params["continue"] = token
            page = await self.client.request("GET", NODES_PATH, params=params)
            self.lists += 1
            meta = page.get("metadata") or {}
            list_rv = list_rv or str(meta.get("resourceVersion", ""))
            items += page.get("items") or []
            token = meta.get("continue") or ""
            if not token:
                break
        for body in items:
            view = NodeView.from_body(body)
            gone = self._tombstones.get(view.name)
            if gone is not None and not _older(gone, view.resource_version):
                continue  # deleted (by an event we already applied) after this LIST was served
            held = self._views.get(view.name)
            if held is None or _older(held.resource_version, view.resource_version):
                self._views[view.name] = view
        self._list_rv = list_rv
        self._tombstones.clear()
        self._loaded.set()
        log.info("node cache: %d nodes from %d LIST page(s)", len(self._views), self.lists)

    # ----- events -----
    def apply(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One Node event (kopf's listing gives type None): the newer version wins; DELETED removes."""
        view = NodeView.from_body(body)
        held = self._views.get(view.name)
        if event_type == "DELETED":
            if held is None or not _older(view.resource_version, held.resource_version):
                self._views.pop(view.name, None)
                if not self._loaded.is_set():
                    self._tombstones[view.name] = view.resource_version
            return
        if held is not None:
            if not _older(view.resource_version, held.resource_version):
                self._views[view.name] = view
            return
        if self._loaded.is_set() and _older(view.resource_version, self._list_rv):
            return  # absent from a LIST newer than this version: deleted since; its DELETED event follows
        gone = self._tombstones.get(view.name)
        if gone is not None and not _older(gone, view.resource_version):
            return
        self._views[view.name] = view
