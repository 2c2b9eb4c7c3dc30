"""The controller as a thin coordinator over three jobs; kopf handlers call its coroutines.

* allocation (routectl.controller.assigner, with the pure rule in .allocation): assign, occupy, release;
* routing (routectl.controller.routing): batches, the full resync, gone nodes, stale-route placeholders;
* reporting (routectl.controller.reporting): node conditions, pool status, Events, metrics.

One `Controller` per leader. It keeps nothing it cannot rebuild: at start it occupies every existing
podCIDR (Node.spec.podCIDRs is the truth, from one LIST), hands out blocks to the waiting nodes at once,
and routes them only after one full route sync (stale routes replaced or deleted first). This module
decides the order: a node's block is released only after its routes are confirmed deleted, and waiting
nodes are served after every release or pool change. Background loops run supervised (restarted, or
/healthz red).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from routectl.constants import EVENT_POOL_INVALID
from routectl.controller.allocation import AllocationBook, canon
from routectl.controller.assigner import Assigner
from routectl.controller.config import Config
from routectl.controller.dispatch import Dispatcher
from routectl.controller.kube import EventRecorder, KubeClient
from routectl.controller.metrics import Metrics
from routectl.controller.nodecache import NodeCache, ObjectCache, PoolCache
from routectl.controller.nodelocks import NodeLocks
from routectl.controller.reporting import STALE_PREFIX, Reporter
from routectl.controller.routing import REASON_CLOUD_ERROR, RoutesFactory, Routing
from routectl.controller.state import IndexViews, NetworkState, NodeView, PoolView, route_state
from routectl.ipam.allocator import Allocator
from routectl.ipam.errors import IPAMError
from routectl.ipam.model import PoolSpec
from routectl.routes.model import NodeRoutes

if TYPE_CHECKING:
    from routectl.cloud.reconcile import RouteReconciler

__all__ = ["REASON_CLOUD_ERROR", "STALE_PREFIX", "TERMINATING_LABEL", "Controller", "RoutesFactory"]

log = logging.getLogger(__name__)

ASSIGN_CONCURRENCY = 64
# Nodes reconciled at once by a pass over many (waiting for a block, or given one before the first route
# sync): enough to keep the assignment slots and the cloud bucket busy (a route insert waits on the cloud).
SERVE_CONCURRENCY = 256

# Selector term added to a pool being deleted so that no node matches it any more (no label has it).
TERMINATING_LABEL = "routectl.io/pool-terminating"


class Controller:
    """Allocation, routing and reporting for one cluster; each public coroutine is safe to call again."""

    def __init__(self, config: Config, client: KubeClient, routes_factory: RoutesFactory, *,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.client = client
        self.metrics = metrics or Metrics()
        self.events = EventRecorder(client, config.event_namespace, instance=config.identity,
                                    on_drop=self.metrics.events_dropped.inc)
        self.views = IndexViews()
        self.book = AllocationBook()  # the allocator and the memory of the podCIDRs we wrote
        self.lock = asyncio.Lock()  # serialises every allocator mutation
        self.fenced = False  # set when leadership is lost: no podCIDR write, no cloud mutation after it
        is_fenced = lambda: self.fenced  # noqa: E731 - read at each call, from any thread
        self.reporter = Reporter(client, self.events, self.metrics, self.book, self.views)
        self.assigner = Assigner(client, self.book, self.lock, self.reporter, self.metrics, is_fenced)
        self.routing = Routing(routes_factory, self.book, self.lock, self.reporter, self.metrics, is_fenced)
        self._ready = asyncio.Event()
        self._ready_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._configured: tuple[Any, ...] | None = None
        self._node_locks = NodeLocks()  # one coroutine at a time per node: its reconcile, or its release
        # nodes without a podCIDR after their last reconcile (no pool, pool full, write not landed):
        # served again after a release, a pool change or a resync, without scanning every node
        self._waiting: set[str] = set()
        # assignments in flight at once: thousands queued on the allocation lock made the first podCIDR
        # wait for every other node's allocation (4 s with 5,000 waiting); 64 keep 32 connections busy
        self._assign_slots = asyncio.Semaphore(ASSIGN_CONCURRENCY)
        self._early: set[str] = set()  # given a block before the first route sync: routed right after it
        self._room_pending = False  # routes were freed while nodes wait for room: resync soon
        self._room_task: asyncio.Task[None] | None = None
        self.handled = 0  # node events handled (tests and the simulator wait on it)
        self.on_serving: Callable[[], None] | None = None  # called once the first blocks are being handed out
        self.health_port: int | None = None
        self.loop_crashes = 0  # background loop failures (each restarted, with the error logged)
        self.dead_loops: set[str] = set()  # loops that kept failing: /healthz turns red

    # ------------------------------------------------------------------------------ collaborators
    @property
    def allocator(self) -> Allocator:
        """The pure allocator (what is held by whom)."""
        return self.book.allocator

    @property
    def routes(self) -> RouteReconciler | None:
        """The route reconciler, once a pool gave the cluster CIDRs."""
        return self.routing.routes

    @property
    def route_status(self) -> dict[str, NetworkState]:
        """Each node's last route state."""
        return self.reporter.route_status

    @property
    def resyncs(self) -> int:
        """Full route passes completed."""
        return self.routing.resyncs

    def node_views(self) -> Mapping[str, NodeView]:
        """Every Node currently known (the live NodeCache, or a copy of the kopf index)."""
        return self.views.node_views()

    def pool_views(self) -> dict[str, PoolView]:
        """Every PodCIDRPool currently known (from the kopf index)."""
        return self.views.pool_views()

    @property
    def ready(self) -> bool:
        """True once the start-up rebuild and first route sync are done."""
        return self._ready.is_set()

    @property
    def healthy(self) -> bool:
        """False once a background loop kept failing (then /healthz is red and the kubelet restarts us)."""
        return not self.dead_loops

    # ---------------------------------------------------------------------------------- start-up
    async def ensure_ready(self, node_index: Mapping[str, Any], pool_index: Mapping[str, Any]) -> None:
        """First call: rebuild from the complete kopf indexes and sync routes; later calls return at once."""
        if self._ready.is_set():
            return
        async with self._ready_lock:
            if self._ready.is_set():
                return
            self.views.node_index, self.views.pool_index = node_index, pool_index
            if isinstance(node_index, ObjectCache):
                self.views.node_map = node_index
            if isinstance(pool_index, ObjectCache):
                self.views.pool_map = pool_index
            started = time.monotonic()
            await self._configure_pools()
            nodes = self.node_views()
            await self.assigner.rebuild(nodes)
            self._waiting = {v.name for v in nodes.values() if not v.pod_cidrs and not v.deleting}
            # Blocks go out now, while the first route sync (and the cloud SDK's import) runs: every
            # existing podCIDR is occupied (the complete view above). These nodes are routed only after
            # that sync; a block whose stale route is still in the cloud has it replaced (delete, then
            # insert), and never gets a route beside a stale copy that could not be deleted.
            early = asyncio.create_task(self._serve_waiting(), name="routectl-serve-early")
            if self.on_serving is not None:
                self.on_serving()
            self._spawn("routectl-route-batches", self.routing.batch_loop)
            delay = 1.0
            while True:  # no node is routed before the stale routes are known (and deleted)
                try:
                    await self.resync(initial=True)
                    break
                except Exception as exc:
                    log.warning("initial route sync failed, retrying in %.0fs: %s", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(30.0, delay * 2)
            await asyncio.gather(early, return_exceptions=True)
            self._ready.set()
            served_early, self._early = self._early, set()
            self._tasks.append(asyncio.create_task(self._route_early(served_early),
                                                   name="routectl-route-early"))
            self.metrics.reconcile.labels("startup").observe(time.monotonic() - started)
            self._spawn("routectl-resync", self._resync_loop)
            self._spawn("routectl-pool-status", self._pool_status_loop)
            log.info("controller ready: %d nodes, %d pools, %d blocks held", len(nodes),
                     len(self.allocator.pools), len(self.allocator.allocations()))

    async def _route_early(self, names: set[str]) -> None:
        """Route (and report) the nodes given a block before the first route sync, now that it ran."""
        live = self.node_views()
        await self._reconcile_each(n for n in names if n in live)

    async def _reconcile_each(self, names: Iterable[str], waiting: bool = False) -> None:
        """Reconcile these nodes, SERVE_CONCURRENCY at a time, each looked up when its turn comes.

        A task per node at once (all 5,000 at a start-up) made one route batch of them all, so every
        condition waited for the last route and 5,000 condition writes queued at once (~60 MB of
        tasks and requests). `waiting`: nodes without a block; one that has one by its turn, or is
        gone or going, is no longer waiting."""
        todo = list(names)
        pending = iter(todo)

        async def serve() -> None:
            for name in pending:
                v = self.node_views().get(name)
                if waiting and (v is None or v.deleting or self.assigner.cidrs_of(v)):
                    self._waiting.discard(name)  # gone, going, or served meanwhile
                    continue
                if v is None:
                    continue
                try:
                    await self.reconcile_node(v)
                except Exception as exc:  # one node's failure is its own: the others are still served
                    log.warning("reconciling node %s failed: %s", name, exc)

        await asyncio.gather(*(serve() for _ in range(min(SERVE_CONCURRENCY, len(todo)))))

    async def wait_ready(self) -> None:
        """Return once the start-up rebuild and first route sync are done (`run` does them)."""
        await self._ready.wait()

    async def run(self, nodes: NodeCache, pools: PoolCache) -> None:
        """Drive the controller from its own informers (routectl.controller.nodecache): one LIST of each,
        the start-up rebuild, the nodes waiting for a block served at once, then every watch event
        dispatched per object (routectl.controller.dispatch) until cancelled.

        Nothing waits for a per-object replay of the initial listing (what kopf did: 5,000 handler calls
        before the first block): the LIST is the complete view, occupied before anything is handed out."""
        await asyncio.gather(nodes.ready(), pools.ready())
        await self.ensure_ready(nodes, pools)
        node_events: Dispatcher[NodeView] = Dispatcher(self._node_view_event, "node")
        pool_events: Dispatcher[PoolView] = Dispatcher(lambda _t, _v: self.pool_changed(nodes, pools), "pool")
        watches = [asyncio.create_task(nodes.run(lambda t, v: node_events.submit(t, v.name, v)),
                                       name="routectl-watch-nodes"),
                   asyncio.create_task(pools.run(lambda t, v: pool_events.submit(t, v.name, v)),
                                       name="routectl-watch-pools")]
        try:
            await asyncio.gather(*watches)
        finally:
            for t in watches:
                t.cancel()
            for d in (node_events, pool_events):
                await d.close()

    async def _node_view_event(self, event_type: str, view: NodeView) -> None:
        """One Node change from the informer (the view is already in the cache)."""
        started = time.monotonic()
        try:
            if event_type == "DELETED":
                await self.node_gone(view)
            else:
                await self.reconcile_node(view)
        finally:
            self.handled += 1
        self.metrics.reconcile.labels("node").observe(time.monotonic() - started)

    async def close(self) -> None:
        """Stop the background loops and the route reconciler's threads (the operator is stopping)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        await self.events.close()
        await self.routing.close()

    def _spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop under supervision (see `_supervise`)."""
        self._tasks.append(asyncio.create_task(self._supervise(name, loop), name=name))

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Restart `loop` when it dies of an unexpected error (logged); five deaths within a minute mark
        it dead, which turns /healthz red: a loop that cannot run must not leave handlers waiting forever
        behind a green liveness probe."""
        crashes: list[float] = []
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < 60.0] + [now]
                self.loop_crashes += 1
                if len(crashes) >= 5:
                    log.critical("background loop %s keeps failing: reporting unhealthy", name, exc_info=True)
                    self.dead_loops.add(name)
                    return
                log.exception("background loop %s died; restarting it", name)
                await asyncio.sleep(0.05 * 2 ** len(crashes))

    # ------------------------------------------------------------------------------------- pools
    async def _configure_pools(self) -> None:
        """Feed every pool spec to the allocator; record problems (Invalid) per pool."""
        specs: list[PoolSpec] = []
        problems: dict[str, list[str]] = {}
        self._configured = self._pool_signature()
        for view in self.pool_views().values():
            try:
                spec = PoolSpec.from_resource(view.body)
            except IPAMError as exc:
                problems[view.name] = [str(exc)]
                continue
            if view.deleting:  # a terminating pool keeps its holdings but serves no new node
                selector = {**spec.node_selector, TERMINATING_LABEL: "true"}
                spec = dataclasses.replace(spec, node_selector=selector)
            specs.append(spec)
        async with self.lock:
            problems.update({k: v for k, v in self.allocator.set_pools(specs).items() if v})
        await self.routing.retarget(specs)
        new = {k: v for k, v in problems.items() if v and v != self.reporter.pool_problems.get(k)}
        self.reporter.pool_problems = problems
        pools = self.pool_views()
        for name, msgs in new.items():
            if name in pools:
                await self.reporter.event_pool(name, "Warning", EVENT_POOL_INVALID, "; ".join(msgs))
        self.reporter.touch()

    async def pool_changed(self, node_index: Mapping[str, Any], pool_index: Mapping[str, Any]) -> None:
        """A pool was created, edited or deleted: reconfigure, then serve nodes that were waiting."""
        await self.ensure_ready(node_index, pool_index)
        if self._pool_signature() == self._configured:
            self.reporter.touch()  # e.g. our own status write or a finalizer: only the status may change
            return
        await self._configure_pools()
        await self._serve_waiting()

    def _pool_signature(self) -> tuple[Any, ...]:
        """What the allocator depends on: each pool's generation and whether it is being deleted."""
        return tuple(sorted((v.name, v.generation, v.deleting, str(v.body.get("spec")))
                            for v in self.pool_views().values()))

    def pool_holders(self, name: str) -> tuple[str, ...]:
        """Nodes (not placeholders) holding blocks from pool `name`."""
        try:
            nodes = self.allocator.usage(name).nodes
        except KeyError:
            nodes = tuple(a.node for a in self.allocator.allocations() if a.pool == name)
        return tuple(n for n in nodes if not n.startswith(STALE_PREFIX))

    # ------------------------------------------------------------------------------------- nodes
    def fence(self) -> None:
        """Leadership is lost: from now on refuse every podCIDR write and cloud route change."""
        if not self.fenced:
            log.warning("fenced: leadership lost, no more podCIDR writes or cloud route changes")
        self.fenced = True

    async def node_event(self, body: Mapping[str, Any], event_type: str | None,
                         node_index: Mapping[str, Any], pool_index: Mapping[str, Any]) -> None:
        """One Node watch event: allocate and route it, or clean up after it when it is gone."""
        await self.ensure_ready(node_index, pool_index)
        await self._node_view_event(event_type or "MODIFIED", NodeView.from_body(body))

    async def reconcile_node(self, view: NodeView) -> None:
        """Give the node a block if it has none, make its routes exist, and say so in its condition.

        One node is reconciled by one coroutine at a time (its event handler, or a retry pass)."""
        async with self._node_locks.hold(view.name):
            await self._reconcile_node(view)

    async def _reconcile_node(self, view: NodeView) -> None:
        if view.deleting:
            self._waiting.discard(view.name)
            return  # pods may still run there; the route and block go when the Node object is gone
        cidrs = self.assigner.cidrs_of(view)
        if not cidrs:
            self._waiting.add(view.name)
            async with self._assign_slots:
                assigned = await self.assigner.assign(view)
            if assigned is None:
                return
            view, cidrs = assigned
        elif view.pod_cidrs:  # an empty view of a node we wrote is stale: it changes nothing
            await self.assigner.occupy(view)
        self._waiting.discard(view.name)
        if not self._ready.is_set():
            self._early.add(view.name)  # routed once the first route sync knows the cloud's routes
            return
        problem = self.assigner.problem(view.name)
        if problem is not None:
            await self.reporter.set_condition(view, route_state(False, "CIDRNotRouted", problem))
            return
        if self.routes is None:
            return  # no pool, no cluster CIDR: nothing of ours to route
        status = await self.routing.ensure(self.routing.node_routes(view, canon(cidrs)))
        await self.reporter.apply_route_status(view, status)
        self.reporter.touch()

    async def _serve_waiting(self) -> None:
        """Retry nodes without a podCIDR (after a pool change or a release made room)."""
        if self._waiting:
            await self._reconcile_each(self._waiting, waiting=True)

    async def node_gone(self, view: NodeView) -> None:
        """A Node was deleted: delete its routes first, then release its block (never the other way)."""
        # The node's lock: a reconcile of it still running (say, writing its podCIDR) finishes first,
        # so its block is known and released here, never leaked. Waiting nodes are served after it.
        async with self._node_locks.hold(view.name):
            if view.name in self.node_views():
                return  # re-created meanwhile; the new object is handled by its own events
            self._waiting.discard(view.name)
            self.routing.gone[view.name] = view
            released = await self._release_gone(view.name)
        if released:
            self.reporter.touch()
            await self._after_release()

    async def _remove_gone(self, serve: bool = True) -> bool:
        """Delete the routes of every gone node, then release the blocks whose routes are confirmed gone.
        Returns whether a block was released (with `serve`, waiting nodes were served already)."""
        released = False
        for name in list(self.routing.gone):
            async with self._node_locks.hold(name):
                released = await self._release_gone(name) or released
        if released:
            self.reporter.touch()
        if serve and released:
            await self._after_release()
        return released

    async def _release_gone(self, name: str) -> bool:
        """Delete a gone node's routes, then release its block; the caller holds the node's lock.

        One node at a time, under its lock: a pass over every gone name must not release a name that
        came back meanwhile (re-created, and given a block by its own reconcile while the routes of the
        old object were being deleted): that would free the block the new Node carries, for the next
        node to get too (found by the model test's soak)."""
        if name in self.node_views():
            self.routing.gone.pop(name, None)
            return False
        if name not in await self.routing.remove_gone(self.node_views(), [name]):
            return False  # routes not confirmed gone: the block stays held, the next pass retries
        await self.assigner.release(name)
        self.reporter.forget(name)
        return True

    async def _after_release(self) -> None:
        """Blocks and routes were freed: serve nodes waiting for a block, and for route-table room."""
        await self._serve_waiting()
        if self.reporter.waits_for_room():
            self._want_room_resync()

    def _want_room_resync(self) -> None:
        """Routes were deleted while nodes wait for route-table room: a resync (one list per table) gives
        them the room now, not at the next periodic resync. A burst of deletions asks for one resync."""
        self._room_pending = True
        if self._room_task is None or self._room_task.done():
            self._room_task = asyncio.create_task(self._room_resync(), name="routectl-room-resync")
            self._tasks = [t for t in self._tasks if not t.done()] + [self._room_task]

    async def _room_resync(self) -> None:
        while self._room_pending:
            await asyncio.sleep(0.5)  # let the rest of a mass deletion land first
            self._room_pending = False
            try:
                await self.resync()
            except Exception:
                log.exception("resync after freeing route-table room failed")

    # ------------------------------------------------------------------------------------ resync
    async def resync(self, initial: bool = False) -> None:
        """Full pass: one list per table, the pure diff, driver actions; conditions and pool facts updated."""
        started = time.monotonic()
        live = self.node_views()
        async with self.lock:
            self.routing.find_gone(live)
        if self.routes is None:
            await self._remove_gone()
            return
        result = await self.routing.sync(self._routable_nodes, initial)
        if result is None:
            return
        live = self.node_views()
        for name, status in result.nodes.items():
            view = live.get(name)
            if view is not None:
                await self.reporter.apply_route_status(view, status)
        await self._remove_gone(serve=not initial)
        if not initial:  # nodes whose last event found no room or no pool: try again
            await self._serve_waiting()
        self.reporter.touch()
        self.metrics.reconcile.labels("resync").observe(time.monotonic() - started)

    def _routable_nodes(self) -> list[NodeRoutes]:
        """Every node that wants routes now: the podCIDRs it shows, or those we wrote that the cache does
        not show yet (else a sync would delete the route the event path just made for it)."""
        out = []
        for v in self.node_views().values():
            cidrs = self.assigner.cidrs_of(v)
            if cidrs and self.assigner.problem(v.name) is None:
                out.append(self.routing.node_routes(v, canon(cidrs)))
        return out

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            try:
                await self.resync()
            except Exception:
                log.exception("resync pass failed")

    # ------------------------------------------------------------------------------- pool status
    async def flush_pool_status(self) -> None:
        """Write each pool's status when it differs from what the pool shows (or we last wrote)."""
        routable = {n: v for n, v in self.node_views().items()
                    if v.pod_cidrs and self.assigner.problem(n) is None}
        self.reporter.route_metrics(routable)
        await self.reporter.flush_pool_status()

    async def _pool_status_loop(self) -> None:
        dirty = self.reporter.dirty
        while True:
            await dirty.wait()
            await asyncio.sleep(0.3)  # debounce a burst of node events into one write per pool
            dirty.clear()
            try:
                await self.flush_pool_status()
            except Exception:
                log.exception("pool status update failed")
