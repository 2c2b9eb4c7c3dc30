"""The agent's informer-style cache of every Node: one LIST, then a WATCH from its resourceVersion.

The overlay needs every Node's podCIDRs, InternalIP and transport; listing them on every sync costs
N agents × N Nodes per resync. Here a LIST happens once (and again only after 410 Gone, when the watch
cannot resume); otherwise the watch resumes from the last resourceVersion seen, after a bounded backoff
on errors. Syncs and the periodic repair read the cache. Changes that matter to the overlay (see
`node_projection`) call `on_change`, so a peer's heartbeat does not make every agent sync.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from routectl.agent.overlay import node_projection

log = logging.getLogger(__name__)

Node = dict[str, Any]
WATCH_SECONDS = 300
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0


class ResourceExpired(Exception):
    """The watch cannot resume from our resourceVersion (410 Gone): only a new LIST can."""


class NodeCache:
    """Every Node as a plain dict, kept current by a watch; thread-safe reads via `nodes()`."""

    def __init__(self, core: client.CoreV1Api, on_change: Callable[[], None] = lambda: None, *,
                 watch_seconds: int = WATCH_SECONDS, backoff_max: float = BACKOFF_MAX) -> None:
        self.core = core
        self.on_change = on_change
        self.watch_seconds = watch_seconds
        self.backoff_max = backoff_max
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}
        self._projections: dict[str, tuple[object, ...]] = {}
        self._rv = ""
        self._resp: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.lists = 0  # LISTs done (for logs; tests count them in the API server's request log)

    @property
    def running(self) -> bool:
        """Whether the watch thread keeps the cache current."""
        return self._thread is not None and self._thread.is_alive()

    def nodes(self) -> list[Node]:
        """A snapshot of every Node (the dicts are shared: read them, do not change them)."""
        with self._lock:
            return list(self._nodes.values())

    def relist(self) -> None:
        """LIST every Node and replace the cache; the watch resumes from the list's resourceVersion."""
        resp = self.core.list_node(_preload_content=False)
        body = json.loads(resp.data)
        items = {str(n["metadata"]["name"]): n for n in body.get("items") or []}
        projections = {name: node_projection(n) for name, n in items.items()}
        with self._lock:
            changed = projections != self._projections
            self._nodes, self._projections = items, projections
            self._rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.lists += 1
        if changed:
            self.on_change()

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one watch event; True when it changed what the overlay depends on (then `on_change`).

        Raises ResourceExpired for a 410 ERROR event and RuntimeError for any other ERROR event.
        """
        etype = event.get("type")
        obj = event.get("object") or {}
        if etype == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise ResourceExpired(obj.get("message", "410 Gone"))
            raise RuntimeError(f"watch error {code}: {obj.get('message')}")
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion")
        name = meta.get("name")
        changed = False
        with self._lock:
            if rv:
                self._rv = str(rv)
            if etype in ("ADDED", "MODIFIED") and name:
                self._nodes[name] = obj
                seen = node_projection(obj)
                changed = self._projections.get(name) != seen
                self._projections[name] = seen
            elif etype == "DELETED" and name:
                self._nodes.pop(name, None)
                changed = self._projections.pop(name, None) is not None
        if changed:
            self.on_change()
        return changed

    def start(self, stop: threading.Event) -> None:
        """LIST now (in the caller, so the first sync has every Node), then watch in a thread."""
        self.relist()
        self._thread = threading.Thread(target=self._run, args=(stop,), name="watch-all-nodes", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the current watch request and the watch thread (call after setting `stop`)."""
        self._closed = True
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):  # a dead connection: nothing left to do
                resp.shutdown()  # unblocks the reading thread at once (close() waits for it)

    def _events(self) -> Iterator[dict[str, Any]]:
        resp = self.core.list_node(watch=True, resource_version=self._rv, allow_watch_bookmarks=True,
                                   timeout_seconds=self.watch_seconds,
                                   _request_timeout=self.watch_seconds + 30, _preload_content=False)
        self._resp = resp
        try:
            for line in iter_resp_lines(resp):
                yield json.loads(line)
        finally:
            self._resp = None
            resp.release_conn()

    def _run(self, stop: threading.Event) -> None:
        backoff = BACKOFF_START
        need_list = False
        while not stop.is_set() and not self._closed:
            if need_list:
                try:
                    self.relist()
                    need_list = False
                except Exception as exc:
                    backoff = self._wait(stop, f"Node list failed: {exc}", backoff)
                    continue
            try:
                for event in self._events():
                    if stop.is_set():
                        return
                    self.apply(event)
                    backoff = BACKOFF_START
                # the server ended the watch (timeoutSeconds): resume from the last resourceVersion
            except ResourceExpired as exc:
                log.info("Node watch expired (%s): listing again", exc)
                need_list = True
            except ApiException as exc:
                if exc.status == 410:
                    log.info("Node watch expired (HTTP 410): listing again")
                    need_list = True
                else:
                    backoff = self._wait(stop, f"Node watch failed: {exc.status} {exc.reason}", backoff)
            except Exception as exc:  # network errors, emulator restarts: resume after a backoff
                if not stop.is_set() and not self._closed:
                    backoff = self._wait(stop, f"Node watch failed: {exc}", backoff)

    def _wait(self, stop: threading.Event, message: str, backoff: float) -> float:
        log.warning("%s; retrying in %.0fs", message, backoff)
        stop.wait(backoff)
        return min(backoff * 2, self.backoff_max)
