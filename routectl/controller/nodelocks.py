"""One asyncio lock per Node name, forgotten once nobody holds it or waits for it.

One coroutine at a time works on a node: its reconcile (say, writing its podCIDR) or the release of its
block once it is gone. An entry is dropped only when its last user leaves: dropping a lock that someone
still waits for would let the next caller make a fresh lock for the same name and run beside the waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class NodeLocks:
    """Per-name locks with a user count (holders and waiters); `len()` is the number of names in use."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold `name`'s lock for the body of the `async with`."""
        lock, users = self._locks.get(name) or (asyncio.Lock(), 0)
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users <= 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    def users(self, name: str) -> int:
        """How many coroutines hold or wait for `name`'s lock."""
        return self._locks.get(name, (None, 0))[1]

    def __len__(self) -> int:
        return len(self._locks)
