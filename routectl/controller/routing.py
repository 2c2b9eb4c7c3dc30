"""Routing: the controller's side of the cloud routes. Batches of node events, the full resync, the routes
of gone nodes, and placeholders for blocks whose stale route could not be deleted.

Every cloud call goes through the RouteReconciler (routectl.cloud.reconcile), in a thread (the SDKs are
sync), with the fence installed so that no mutation is sent once leadership is lost. This module never
releases a block itself: it says which gone nodes' routes are confirmed deleted, and the coordinator
releases those (routes first, block after, never the other way).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from routectl.constants import DEFAULT_ROUTE_LIMIT_WARNING_PERCENT
from routectl.controller.allocation import AllocationBook, canon
from routectl.controller.metrics import Metrics
from routectl.controller.reporting import STALE_PREFIX, Reporter
from routectl.controller.state import NodeView, stale_placeholder_changes
from routectl.ipam.model import PoolSpec, node_masks, route_scope
from routectl.routes.model import NodeRoutes, NodeRouteStatus

if TYPE_CHECKING:
    from routectl.cloud.reconcile import RouteReconciler, SyncResult

log = logging.getLogger(__name__)

REASON_CLOUD_ERROR = "CloudError"
# (cluster CIDRs, route-limit warning percent) -> a RouteReconciler over the configured cloud driver.
RoutesFactory = Callable[[list[str], int], "RouteReconciler"]
# One queued node: its routes and the handlers waiting for its status.
Batch = dict[str, tuple[NodeRoutes, list["asyncio.Future[NodeRouteStatus]"]]]


class Routing:
    """Cloud routes for one controller (see the module docstring)."""

    def __init__(self, routes_factory: RoutesFactory, book: AllocationBook, lock: asyncio.Lock,
                 reporter: Reporter, metrics: Metrics, fenced: Callable[[], bool]) -> None:
        # The route reconciler needs the cluster CIDRs (the pools'), so it is built once pools are known.
        self.routes_factory = routes_factory
        self.routes: RouteReconciler | None = None
        self.cluster_cidrs: tuple[str, ...] = ()
        self.warn_percent = DEFAULT_ROUTE_LIMIT_WARNING_PERCENT
        self.node_masks: dict[str, int] = {}
        self.by_age = False
        self.book = book
        self.lock = lock
        self.reporter = reporter
        self.metrics = metrics
        self.fenced = fenced
        self.gone: dict[str, NodeView] = {}  # deleted nodes whose routes are not confirmed deleted yet
        self.stale_placeholders: set[str] = set()
        self.resyncs = 0
        self._batch: Batch = {}
        self._batch_wakeup = asyncio.Event()
        self._sync_lock = asyncio.Lock()

    async def retarget(self, specs: list[PoolSpec]) -> None:
        """Build the route reconciler for the pools' CIDRs, or point it at a changed set of CIDRs."""
        cidrs, warn = route_scope(specs)
        masks = node_masks(specs)
        self.reporter.overlay_pools = {s.name for s in specs if s.overlay_fallback}
        # with any pool falling back to the overlay, room goes to the oldest nodes first (so overlay nodes
        # move back oldest first); without, today's address order is kept exactly
        self.by_age = bool(self.reporter.overlay_pools)
        unchanged = (cidrs, warn, masks) == (self.cluster_cidrs, self.warn_percent, self.node_masks)
        if not cidrs or (self.routes is not None and unchanged):
            return
        if self.routes is None:
            routes = await asyncio.to_thread(self.routes_factory, list(cidrs), warn)
            routes.set_fence(self.fenced)  # checked before every cloud mutation, in any thread
            self.routes = routes
        else:  # in a thread: it waits for the reconciler's lock, which a running sync holds
            await asyncio.to_thread(self.routes.set_cluster_cidrs, list(cidrs), warn)
        # ownership = exactly one node block of a pool, so the reconciler needs each pool's node masks
        await asyncio.to_thread(self.routes.set_node_masks, masks)
        self.cluster_cidrs, self.warn_percent, self.node_masks = cidrs, warn, masks

    def node_routes(self, view: NodeView, cidrs: tuple[str, ...]) -> NodeRoutes:
        """The route layer's view of a node (its age only when room is handed out by age)."""
        return NodeRoutes(view.name, view.uid, view.provider_id, cidrs,
                          created=view.created if self.by_age else "")

    async def close(self) -> None:
        """Stop the reconciler's worker threads."""
        if self.routes is not None:
            await asyncio.to_thread(self.routes.close)

    # ------------------------------------------------------------------------------------ batches
    async def ensure(self, node: NodeRoutes) -> NodeRouteStatus:
        """Queue one node for the next route batch and wait for its status (events arrive in bursts)."""
        fut: asyncio.Future[NodeRouteStatus] = asyncio.get_running_loop().create_future()
        _, futures = self._batch.get(node.name, (node, []))
        self._batch[node.name] = (node, [*futures, fut])
        self._batch_wakeup.set()
        return await fut

    async def batch_loop(self) -> None:
        """Run queued nodes through RouteReconciler.ensure() together: one thread hop, bounded concurrency."""
        while True:
            await self._batch_wakeup.wait()
            await asyncio.sleep(0.05)
            self._batch_wakeup.clear()
            batch, self._batch = self._batch, {}
            if not batch:
                continue
            try:
                await self._route_batch(batch)
            finally:  # whatever went wrong, no handler waits forever for this batch
                _settle(batch, NodeRouteStatus(False, "RoutePending",
                                               "route batch failed; the next resync retries"))

    async def _route_batch(self, batch: Batch) -> None:
        """Ensure one batch of nodes' routes and resolve their futures with each node's status."""
        started = time.monotonic()
        if self.fenced() or self.routes is None:
            _settle(batch, NodeRouteStatus(False, "Fenced", "not the leader any more"))
            return
        try:
            result = await asyncio.to_thread(self.routes.ensure, [n for n, _ in batch.values()])
        except Exception as exc:
            log.warning("route ensure failed for %d node(s): %s", len(batch), exc)
            _settle(batch, NodeRouteStatus(False, REASON_CLOUD_ERROR, str(exc)))
            return
        new_warnings = self.reporter.take_capacity(result, full=False)
        for name, (_, futures) in batch.items():
            status = result.nodes.get(name) or NodeRouteStatus(False, "RoutePending", "not routed yet")
            for f in futures:
                if not f.done():
                    f.set_result(status)
        self.metrics.reconcile.labels("routes").observe(time.monotonic() - started)
        await self.reporter.post_limit_events(new_warnings)

    # ------------------------------------------------------------------------------------- resync
    async def sync(self, nodes_now: Callable[[], list[NodeRoutes]], initial: bool) -> SyncResult | None:
        """One full pass (one list per table); None when it failed (raised instead when `initial`).

        `nodes_now` builds the node list only once the reconciler records event work: a node routed by
        the event path before that is in the list, one routed after it is left alone by the sync, so no
        sync deletes the route of a node assigned while it started. One sync at a time (the record)."""
        if self.routes is None or self.fenced():
            return None
        routes = self.routes
        try:
            async with self._sync_lock:
                await asyncio.to_thread(routes.track_events)
                nodes = nodes_now()
                result = await asyncio.to_thread(routes.sync, nodes, True)
        except Exception as exc:
            log.warning("route resync failed: %s", exc)
            if initial:
                raise
            return None
        self.resyncs += 1
        await self.reporter.post_limit_events(self.reporter.take_capacity(result, full=True))
        await self._hold_stale_blocks(result)
        return result

    async def _hold_stale_blocks(self, result: SyncResult) -> None:
        """Keep blocks whose stale route could not be deleted occupied, so they are not handed out again."""
        failed = {canon([a.destination])[0] for a, _ in result.failed if a.kind == "delete"}
        occupy, release = stale_placeholder_changes(failed, self.stale_placeholders)
        allocator = self.book.allocator
        async with self.lock:
            for dest in occupy:
                holder = STALE_PREFIX + dest
                # a block a node holds already (served before the first sync) stays that node's: its
                # route waits until the stale one is gone (RouteReconciler adds none beside it)
                if allocator.allocation_of(holder) is None and not allocator.claims([dest]):
                    allocator.occupy(holder, [dest])
            for dest in release:
                allocator.release(STALE_PREFIX + dest)
        self.stale_placeholders = failed

    # -------------------------------------------------------------------------------- gone nodes
    def find_gone(self, live: Mapping[str, NodeView]) -> None:
        """Holders that are no Node any more (deleted while we were not watching) are gone nodes too."""
        for a in self.book.allocator.allocations():
            if a.node not in live and not a.node.startswith(STALE_PREFIX) and a.node not in self.gone:
                self.gone[a.node] = NodeView(a.node, "", None, {}, a.cidrs, "", False, None)

    async def remove_gone(self, live: Mapping[str, NodeView],
                          names: Iterable[str] | None = None) -> list[str]:
        """Delete the routes of every gone node (or of those `names`); return those whose routes are
        confirmed gone (their blocks may be released now, and only now)."""
        done: list[str] = []
        wanted = list(self.gone) if names is None else [n for n in names if n in self.gone]
        for name, view in [(n, self.gone[n]) for n in wanted]:
            if name in live:
                self.gone.pop(name, None)
                continue
            if self.fenced():
                break
            if self.routes is not None:
                try:
                    result = await asyncio.to_thread(self.routes.remove, name, canon(view.pod_cidrs),
                                                     uid=view.uid or None, provider_id=view.provider_id)
                    await self.reporter.post_limit_events(self.reporter.take_capacity(result, full=False))
                    status = result.nodes.get(name)
                    if status is not None and not status.ok:
                        raise RuntimeError(status.message)
                except Exception as exc:
                    log.warning("deleting routes of gone node %s failed (block kept): %s", name, exc)
                    continue
            self.gone.pop(name, None)
            done.append(name)
        return done


def _settle(batch: Batch, status: NodeRouteStatus) -> None:
    """Resolve every still-waiting handler of `batch` with `status`."""
    for _, futures in batch.values():
        for f in futures:
            if not f.done():
                f.set_result(status)
