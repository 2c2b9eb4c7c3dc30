"""Per-object event dispatch for the controller's own informers (what kopf's per-object workers did).

Events of one object are handled one at a time, in the order the API made them; objects run
concurrently, one task per object with work queued (as kopf does: a node waiting on the cloud bucket
must not hold up another's podCIDR), at most `limit` at once: a burst of 5,000 new nodes started 5,000
handlers together, and the memory they held at the peak stayed with the process. Objects over the
limit wait their turn in arrival order. Versions queued behind a running handler coalesce into the
newest (a burst of kubelet heartbeats is handled once); a DELETED is never coalesced away, so the
deletion of an object and the creation of its namesake are both handled, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
DELETED = "DELETED"


class Dispatcher(Generic[T]):
    """`submit(type, name, item)` from the informer; `handle(type, item)` runs per name in order."""

    def __init__(self, handle: Callable[[str, T], Awaitable[None]], what: str = "object",
                 limit: int = 512) -> None:
        self.handle = handle
        self.what = what
        self.limit = limit
        self._queues: dict[str, deque[tuple[str, T]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._turns: deque[str] = deque()  # objects with work queued, waiting for a free handler
        self._turn_set: set[str] = set()
        self.coalesced = 0  # versions replaced by a newer one before being handled
        self.failures = 0  # handler errors (logged; the next version or a resync retries)

    @property
    def busy(self) -> int:
        """Objects with a handler running or waiting for one."""
        return len(self._tasks) + len(self._turn_set)

    def submit(self, event_type: str, name: str, item: T) -> None:
        """Queue one version of object `name`; never blocks, never waits for the handler."""
        queue = self._queues.setdefault(name, deque())
        if queue and event_type != DELETED and queue[-1][0] != DELETED:
            queue[-1] = (event_type, item)  # not started yet: the newest version is what matters
            self.coalesced += 1
        else:
            queue.append((event_type, item))
        if name in self._tasks or name in self._turn_set:
            return
        if len(self._tasks) < self.limit:
            self._start(name)
        else:
            self._turns.append(name)
            self._turn_set.add(name)

    def _start(self, name: str) -> None:
        self._tasks[name] = asyncio.get_running_loop().create_task(
            self._drain(name), name=f"routectl-{self.what}-{name}")

    async def _drain(self, name: str) -> None:
        queue = self._queues[name]
        try:
            while queue:
                event_type, item = queue.popleft()
                try:
                    await self.handle(event_type, item)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.failures += 1
                    log.exception("handling %s of %s %s failed", event_type, self.what, name)
        finally:
            self._tasks.pop(name, None)
            if not queue:
                self._queues.pop(name, None)
            while self._turns and len(self._tasks) < self.limit:
                nxt = self._turns.popleft()
                self._turn_set.discard(nxt)
                if nxt in self._queues:
                    self._start(nxt)

    async def idle(self) -> None:
        """Wait until nothing is queued or running (tests; shutdown)."""
        while self._tasks or self._turns:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every running handler (the operator is stopping or lost its Lease)."""
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._queues.clear()
        self._turns.clear()
        self._turn_set.clear()
