"""The Lease on a thread and event loop of its own, so a busy controller loop cannot make it miss a renewal.

A separate client alone is not enough at 5,000 nodes: the controller's loop is the one kopf drives
thousands of Node events through, and a renewal coroutine on it waited seconds for its turn (up to 7 s
between renewals with a 9 s renew deadline). Here the elector runs on its own loop in its own thread,
as client-go's runs in its own goroutine.

A controller whose loop is hung must still give leadership up: the work loop beats a heartbeat, and a
renewal is refused while the heartbeat is older than `stall_limit`; the elector then loses the Lease at
its renew deadline as before (fencing is unchanged: it acts on the time since the last renewal).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from routectl.controller.leader import FAILED, LeaderElector

log = logging.getLogger(__name__)

T = TypeVar("T")
BEAT_SECONDS = 0.5


class WatchedElector(LeaderElector):
    """A LeaderElector that refuses to renew while `work_alive()` says the controller's loop is stalled."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.work_alive: Callable[[], bool] = lambda: True

    async def try_acquire_or_renew(self) -> str:
        """As LeaderElector's, but FAILED (no write) while the work loop does not beat."""
        if not self.work_alive():
            log.warning("leader election: the controller's loop has not run for a while; not renewing")
            return FAILED
        return await super().try_acquire_or_renew()


class LeaseThread:
    """Runs one elector's coroutines on a dedicated thread and loop; the work loop awaits them."""

    def __init__(self, elector: WatchedElector, stall_limit: float) -> None:
        self.elector = elector
        self.stall_limit = stall_limit
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="routectl-lease", daemon=True)
        self._beat = time.monotonic()
        self._beater: asyncio.Task[None] | None = None
        elector.work_alive = self.work_alive

    def work_alive(self) -> bool:
        """Whether the work loop beat within `stall_limit` seconds."""
        return time.monotonic() - self._beat < self.stall_limit

    def start(self) -> None:
        """Start the lease thread, and the heartbeat on the calling (work) loop."""
        self._thread.start()
        self._beater = asyncio.get_running_loop().create_task(self._beating(), name="routectl-lease-beat")

    async def _beating(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(BEAT_SECONDS)

    async def run(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await `fn()` run on the lease loop (cancelling the await cancels it there)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(), self._loop))

    async def stop(self) -> None:
        """Close the elector's client on its loop, then stop the loop and the thread."""
        if self._beater is not None:
            self._beater.cancel()
        if self._thread.is_alive():
            await self.run(self.elector.client.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
        if not self._thread.is_alive():
            self._loop.close()
