"""The controller's core loop as plain async methods: allocate, route, report. kopf handlers call these.

One `Controller` per leader. It keeps nothing it cannot rebuild: on the first event it occupies every
existing podCIDR (Node.spec.podCIDRs is the truth), reconciles the cloud routes once (deleting stale
ones before any block can be reused), and only then hands out blocks. Decisions come from the pure
IPAM allocator, the pure route diff (through RouteReconciler) and routectl.controller.state; this
module only sequences them with Kubernetes writes and driver calls (in threads: the SDKs are sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from routectl.cloud.base import REASON_ROUTE_LIMIT
from routectl.constants import (
    DEFAULT_ROUTE_LIMIT_WARNING_PERCENT,
    EVENT_CIDR_ASSIGNED,
    EVENT_CIDR_CONFLICT,
    EVENT_CIDR_NOT_AVAILABLE,
    EVENT_FAILED_TO_CREATE_ROUTE,
    EVENT_POOL_INVALID,
    EVENT_ROUTE_LIMIT_NEARING,
    EVENT_ROUTE_LIMIT_REACHED,
    POOL_KIND,
)
from routectl.controller import kube
from routectl.controller.allocation import AllocationBook, canon, newer
from routectl.controller.config import Config
from routectl.controller.kube import ApiError, EventRecorder, KubeClient
from routectl.controller.metrics import Metrics
from routectl.controller.state import (
    NetworkState,
    NodeView,
    PoolFacts,
    PoolView,
    condition_is_current,
    merge_warnings,
    pool_status,
    route_state,
    stale_placeholder_changes,
    status_differs,
)
from routectl.ipam.allocator import Allocator, Finding, NodeCIDRs
from routectl.ipam.errors import CIDRExhaustedError, IPAMError, NoMatchingPoolError
from routectl.ipam.model import PoolSpec, route_scope
from routectl.routes.model import LimitWarning, NodeRoutes, NodeRouteStatus, TableCapacity

if TYPE_CHECKING:
    from routectl.cloud.reconcile import RouteReconciler, SyncResult

REASON_CLOUD_ERROR = "CloudError"
# (cluster CIDRs, route-limit warning percent) -> a RouteReconciler over the configured cloud driver.
RoutesFactory = Callable[[list[str], int], "RouteReconciler"]

log = logging.getLogger(__name__)

# Selector term added to a pool being deleted so that no node matches it any more (no label has it).
TERMINATING_LABEL = "routectl.io/pool-terminating"
# Placeholder holders in the allocator for blocks still routed in the cloud to a node that is gone.
STALE_PREFIX = "route:"



class Controller:
    """Allocation, routing and reporting for one cluster; each public coroutine is safe to call again."""

    def __init__(self, config: Config, client: KubeClient, routes_factory: RoutesFactory, *,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.client = client
        # The route reconciler needs the cluster CIDRs (the pools'), so it is built once pools are known.
        self.routes_factory = routes_factory
        self.routes: RouteReconciler | None = None
        self.cluster_cidrs: tuple[str, ...] = ()
        self.warn_percent = DEFAULT_ROUTE_LIMIT_WARNING_PERCENT
        self.metrics = metrics or Metrics()
        self.events = EventRecorder(client, config.event_namespace, instance=config.identity)
        self.book = AllocationBook()  # the allocator and the memory of the podCIDRs we wrote
        self.lock = asyncio.Lock()  # serialises every allocator mutation
        self._ready = asyncio.Event()
        self._ready_lock = asyncio.Lock()
        self._node_index: Mapping[str, Any] | None = None
        self._pool_index: Mapping[str, Any] | None = None
        self.route_status: dict[str, NetworkState] = {}
        self.findings: dict[str, list[Finding]] = {}
        self.pool_problems: dict[str, list[str]] = {}
        self.exhausted: dict[str, dict[str, str]] = {}  # pool -> {node waiting for a block: why}
        self.gone: dict[str, NodeView] = {}  # deleted nodes whose routes are not confirmed deleted yet
        self.tables: list[TableCapacity] = []
        self.warnings: list[LimitWarning] = []
        self._written: dict[str, tuple[NetworkState, str]] = {}
        self._pool_written: dict[str, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._batch: dict[str, tuple[NodeRoutes, list[asyncio.Future[NodeRouteStatus]]]] = {}
        self._batch_wakeup = asyncio.Event()
        self.stale_placeholders: set[str] = set()
        self._configured: tuple[Any, ...] | None = None
        self._node_locks: dict[str, asyncio.Lock] = {}
        self.resyncs = 0
        self._room_pending = False  # routes were freed while nodes wait for room: resync soon
        self._room_task: asyncio.Task[None] | None = None
        self.fenced = False  # set when leadership is lost: no podCIDR write, no cloud mutation after it
        self.handled = 0  # node events handled (tests and the simulator wait on it)
        self.health_port: int | None = None
        self.loop_crashes = 0  # background loop failures (each restarted, with the error logged)
        self.dead_loops: set[str] = set()  # loops that kept failing: /healthz turns red

    # ------------------------------------------------------------------------------------ views
    @staticmethod
    def _views(index: Mapping[str, Any] | None) -> list[Any]:
        """The newest value of every key of a kopf index (each key's store holds one view)."""
        out = []
        for store in list((index or {}).values()):
            for value in store:
                out.append(value)
                break
        return out

    def node_views(self) -> dict[str, NodeView]:
        """Every Node currently known (from the kopf index)."""
        return {v.name: v for v in self._views(self._node_index)}

    def pool_views(self) -> dict[str, PoolView]:
        """Every PodCIDRPool currently known (from the kopf index)."""
        return {v.name: v for v in self._views(self._pool_index)}

    @property
    def allocator(self) -> Allocator:
        """The pure allocator (what is held by whom)."""
        return self.book.allocator

    @property
    def ready(self) -> bool:
        """True once the start-up rebuild and first route sync are done."""
        return self._ready.is_set()

    # ---------------------------------------------------------------------------------- start-up
    async def ensure_ready(self, node_index: Mapping[str, Any], pool_index: Mapping[str, Any]) -> None:
        """First call: rebuild from the complete kopf indexes and sync routes; later calls return at once."""
        if self._ready.is_set():
            return
        async with self._ready_lock:
            if self._ready.is_set():
                return
            self._node_index, self._pool_index = node_index, pool_index
            started = time.monotonic()
            await self._configure_pools(post_events=True)
            nodes = self.node_views()
            async with self.lock:
                findings = self.book.rebuild(
                    NodeCIDRs(v.name, v.pod_cidrs, v.labels) for v in nodes.values() if v.pod_cidrs)
            self._record_findings({v.name for v in nodes.values()}, findings)
            for f in findings:
                if f.node in nodes:
                    await self._event_node(nodes[f.node], "Warning", EVENT_CIDR_CONFLICT, f.message)
            self._spawn("routectl-route-batches", self._ensure_loop)
            delay = 1.0
            while True:  # no block is handed out before stale routes are known (and deleted)
                try:
                    await self.resync(initial=True)
                    break
                except Exception as exc:
                    log.warning("initial route sync failed, retrying in %.0fs: %s", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(30.0, delay * 2)
            self._ready.set()
            self.metrics.reconcile.labels("startup").observe(time.monotonic() - started)
            self._spawn("routectl-resync", self._resync_loop)
            self._spawn("routectl-pool-status", self._pool_status_loop)
            log.info("controller ready: %d nodes, %d pools, %d blocks held", len(nodes),
                     len(self.allocator.pools), len(self.allocator.allocations()))

    async def close(self) -> None:
        """Stop the background loops and the route reconciler's threads (the operator is stopping)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self.routes is not None:
            await asyncio.to_thread(self.routes.close)

    @property
    def healthy(self) -> bool:
        """False once a background loop kept failing (then /healthz is red and the kubelet restarts us)."""
        return not self.dead_loops

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
    async def _configure_pools(self, post_events: bool = False) -> None:
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
        await self._retarget_routes(specs)
        new = {k: v for k, v in problems.items() if v and v != self.pool_problems.get(k)}
        self.pool_problems = problems
        pools = self.pool_views()
        for name, msgs in new.items():
            if name in pools:
                await self._event_pool(name, "Warning", EVENT_POOL_INVALID, "; ".join(msgs))
        self._dirty.set()

    async def _retarget_routes(self, specs: list[PoolSpec]) -> None:
        """Build the route reconciler for the pools' CIDRs, or point it at a changed set of CIDRs."""
        cidrs, warn = route_scope(specs)
        unchanged = (cidrs, warn) == (self.cluster_cidrs, self.warn_percent)
        if not cidrs or (self.routes is not None and unchanged):
            return
        if self.routes is None:
            routes = await asyncio.to_thread(self.routes_factory, list(cidrs), warn)
            routes.set_fence(lambda: self.fenced)  # checked before every cloud mutation, in any thread
            self.routes = routes
        else:  # in a thread: it waits for the reconciler's lock, which a running sync holds
            await asyncio.to_thread(self.routes.set_cluster_cidrs, list(cidrs), warn)
        self.cluster_cidrs, self.warn_percent = cidrs, warn

    async def pool_changed(self, node_index: Mapping[str, Any], pool_index: Mapping[str, Any]) -> None:
        """A pool was created, edited or deleted: reconfigure, then serve nodes that were waiting."""
        await self.ensure_ready(node_index, pool_index)
        if self._pool_signature() == self._configured:
            self._dirty.set()  # e.g. our own status write or a finalizer: only the status may need a refresh
            return
        await self._configure_pools(post_events=True)
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
        view = NodeView.from_body(body)
        started = time.monotonic()
        try:
            if event_type == "DELETED":
                await self.node_gone(view)
            else:
                await self.reconcile_node(view)
        finally:
            self.handled += 1
        self.metrics.reconcile.labels("node").observe(time.monotonic() - started)

    async def reconcile_node(self, view: NodeView) -> None:
        """Give the node a block if it has none, make its routes exist, and say so in its condition.

        One node is reconciled by one coroutine at a time (its event handler, or a retry pass)."""
        lock = self._node_locks.setdefault(view.name, asyncio.Lock())
        async with lock:
            await self._reconcile_node(view)

    async def _reconcile_node(self, view: NodeView) -> None:
        if view.deleting:
            return  # pods may still run there; the route and block go when the Node object is gone
        cidrs = self.book.cidrs_of(view.name, view.pod_cidrs)
        if not cidrs:
            assigned = await self._assign(view)
            if assigned is None:
                return
            view, cidrs = assigned
        elif view.pod_cidrs:  # an empty view of a node we wrote is stale: it changes nothing
            await self._occupy(view)
        problem = self._cidr_problem(view.name)
        if problem is not None:
            await self._set_condition(view, route_state(False, "CIDRNotRouted", problem))
            return
        if self.routes is None:
            return  # no pool, no cluster CIDR: nothing of ours to route
        status = await self._ensure_routes(NodeRoutes(view.name, view.uid, view.provider_id, canon(cidrs)))
        await self._apply_route_status(view, status)
        self._dirty.set()

    async def _ensure_routes(self, node: NodeRoutes) -> NodeRouteStatus:
        """Queue one node for the next route batch and wait for its status (events arrive in bursts)."""
        fut: asyncio.Future[NodeRouteStatus] = asyncio.get_running_loop().create_future()
        _, futures = self._batch.get(node.name, (node, []))
        self._batch[node.name] = (node, [*futures, fut])
        self._batch_wakeup.set()
        return await fut

    async def _ensure_loop(self) -> None:
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
                for _, futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_result(NodeRouteStatus(False, "RoutePending",
                                                         "route batch failed; the next resync retries"))

    async def _route_batch(self, batch: dict[str, tuple[NodeRoutes, list[asyncio.Future[NodeRouteStatus]]]]
                           ) -> None:
        """Ensure one batch of nodes' routes and resolve their futures with each node's status."""
        started = time.monotonic()
        if self.fenced or self.routes is None:
            for _, futures in batch.values():
                for f in futures:
                    if not f.done():
                        f.set_result(NodeRouteStatus(False, "Fenced", "not the leader any more"))
            return
        try:
            result = await asyncio.to_thread(self.routes.ensure, [n for n, _ in batch.values()])
        except Exception as exc:
            log.warning("route ensure failed for %d node(s): %s", len(batch), exc)
            for _, futures in batch.values():
                for f in futures:
                    if not f.done():
                        f.set_result(NodeRouteStatus(False, REASON_CLOUD_ERROR, str(exc)))
            return
        new_warnings = self._take_capacity(result, full=False)
        for name, (_, futures) in batch.items():
            status = result.nodes.get(name) or NodeRouteStatus(False, "RoutePending", "not routed yet")
            for f in futures:
                if not f.done():
                    f.set_result(status)
        self.metrics.reconcile.labels("routes").observe(time.monotonic() - started)
        await self._post_limit_events(new_warnings)

    def _take_capacity(self, result: SyncResult, full: bool) -> list[LimitWarning]:
        """Remember table fill and limit warnings from a route result (a full sync replaces warnings);
        return the warnings not known before."""
        known = {(w.kind, w.table, w.message) for w in self.warnings}
        self.metrics.count_route_ops(result)
        self.tables = list(result.tables)
        for t in self.tables:
            self.metrics.set_table(t.table, t.used, t.limit)
        self.warnings = merge_warnings(self.warnings, list(result.warnings), full)
        return [w for w in result.warnings if (w.kind, w.table, w.message) not in known]

    async def _post_limit_events(self, warnings: list[LimitWarning]) -> None:
        """A Warning Event on every pool for each new route-limit warning (nearing or reached)."""
        for w in warnings:
            reason = EVENT_ROUTE_LIMIT_REACHED if w.kind == "reached" else EVENT_ROUTE_LIMIT_NEARING
            for pool in self.pool_views():
                await self._event_pool(pool, "Warning", reason, w.message)

    async def _occupy(self, view: NodeView) -> None:
        """Record a podCIDR set by anyone (us before a restart, or another tool); report conflicts."""
        async with self.lock:
            findings = self.book.observe(view.name, view.pod_cidrs, view.resource_version)
        if findings is None:
            return  # nothing new (or older than what we wrote)
        self._not_waiting(view.name)
        self.findings[view.name] = findings
        for f in findings:
            await self._event_node(view, "Warning", EVENT_CIDR_CONFLICT, f.message)
        self._dirty.set()

    def _cidr_problem(self, node: str) -> str | None:
        """Why a node's podCIDR must not be routed (overlap, outside every pool...), or None."""
        fs = self.findings.get(node)
        return "; ".join(f.message for f in fs) if fs else None

    def _record_findings(self, names: Iterable[str], findings: Iterable[Finding]) -> None:
        by_node: dict[str, list[Finding]] = {n: [] for n in names}
        for f in findings:
            by_node.setdefault(f.node, []).append(f)
        self.findings = {n: fs for n, fs in by_node.items() if fs}

    async def _assign(self, view: NodeView) -> tuple[NodeView, tuple[str, ...]] | None:
        """Allocate a block and write it with a resourceVersion precondition; never overwrite one.

        The block stays held unless the API said for certain that the node does not carry it (404, or
        a refusal of the value itself): a failed write may still have landed (a timeout, a 5xx after the
        commit), and a block freed on a guess is a block handed out twice."""
        refusal: tuple[str, str] | None = None
        async with self.lock:
            try:
                alloc = self.book.allocate(view.name, view.labels)
            except NoMatchingPoolError as exc:
                refusal = ("Normal", str(exc))
            except CIDRExhaustedError as exc:
                refusal = ("Warning", str(exc))
                pool = self.allocator.select_pool(view.labels)
                if pool is not None:
                    self.exhausted.setdefault(pool.name, {})[view.name] = str(exc)
                    self._dirty.set()
        if refusal is not None:
            await self._event_node(view, refusal[0], EVENT_CIDR_NOT_AVAILABLE, refusal[1])
            return None
        rv = view.resource_version
        for _attempt in range(8):
            async with self.lock:
                if self.fenced:  # lost the Lease while allocating: another replica may hand this block out
                    self.book.release(view.name)
                    return None
                bug = self.book.claim_problem(alloc)
            if bug is not None:
                log.error("BUG: refusing to write podCIDR of node %s: %s (please report)", view.name, bug)
                self.metrics.node_writes.labels("refused-claim").inc()
                return None
            try:
                body = await kube.set_node_pod_cidrs(self.client, view.name, rv, alloc.cidrs)
            except ApiError as exc:
                if exc.status == 404:
                    async with self.lock:
                        self.book.release(view.name)
                    return None
                try:
                    fresh = NodeView.from_body(await self.client.get(f"/api/v1/nodes/{view.name}"))
                except ApiError as exc2:
                    if exc2.status == 404:
                        async with self.lock:
                            self.book.release(view.name)
                    else:  # unknown whether the write landed: keep the block, a later pass retries
                        log.warning("writing podCIDR of node %s failed (block kept): %s", view.name, exc)
                    return None
                if fresh.pod_cidrs:  # set meanwhile (by us, the write landed, or by someone else)
                    if canon(fresh.pod_cidrs) == canon(alloc.cidrs):
                        body = await self.client.get(f"/api/v1/nodes/{view.name}")
                        break
                    await self._occupy(fresh)  # theirs is the truth
                    return fresh, fresh.pod_cidrs
                if exc.status == 422 and fresh.resource_version == rv:
                    # not a lost race (the node is unchanged): the API refused the value itself
                    async with self.lock:
                        self.book.release(view.name)
                    log.warning("the API refused podCIDR %s for node %s: %s", alloc.cidrs, view.name, exc)
                    await self._event_node(view, "Warning", EVENT_CIDR_NOT_AVAILABLE,
                                           f"the API refused podCIDR {', '.join(alloc.cidrs)}: {exc.message}")
                    self._dirty.set()
                    return None
                if not exc.conflict:
                    log.warning("writing podCIDR of node %s failed, retrying: %s", view.name, exc)
                    await asyncio.sleep(0.2)
                rv = fresh.resource_version
                continue
            break
        else:
            return None  # still not written: the block stays held, a later pass retries
        self.metrics.node_writes.labels("podCIDR").inc()
        self._not_waiting(view.name)
        async with self.lock:
            self.book.wrote(view.name, alloc.cidrs,
                            str((body.get("metadata") or {}).get("resourceVersion", "")))
        self.metrics.allocations.labels(alloc.pool or "-").inc()
        self._dirty.set()
        new_view = NodeView.from_body(body)
        await self._event_node(new_view, "Normal", EVENT_CIDR_ASSIGNED,
                               f"assigned {', '.join(alloc.cidrs)} from pool {alloc.pool}")
        return new_view, alloc.cidrs

    def _not_waiting(self, node: str) -> None:
        for waiting in self.exhausted.values():
            waiting.pop(node, None)

    async def _serve_waiting(self) -> None:
        """Retry nodes without a podCIDR (after a pool change or a release made room), concurrently."""
        waiting = [v for v in self.node_views().values()
                   if not v.deleting and not self.book.cidrs_of(v.name, v.pod_cidrs)]
        if waiting:
            await asyncio.gather(*(self.reconcile_node(v) for v in waiting), return_exceptions=True)

    async def node_gone(self, view: NodeView) -> None:
        """A Node was deleted: delete its routes first, then release its block (never the other way)."""
        # The node's lock: a reconcile of it still running (say, writing its podCIDR) finishes first,
        # so its block is known and released here, never leaked. Waiting nodes are served after it.
        lock = self._node_locks.setdefault(view.name, asyncio.Lock())
        async with lock:
            if view.name in self.node_views():
                return  # re-created meanwhile; the new object is handled by its own events
            self.gone[view.name] = view
            released = await self._remove_gone(serve=False)
        if released:
            await self._after_release()

    async def _remove_gone(self, serve: bool = True) -> bool:
        """Delete the routes of every gone node; release the blocks whose routes are confirmed gone.
        Returns whether a block was released (with `serve`, waiting nodes were served already)."""
        live = self.node_views()
        released_any = False
        for name, view in list(self.gone.items()):
            if name in live:
                self.gone.pop(name, None)
                continue
            if self.fenced:
                return released_any
            if self.routes is not None:
                try:
                    result = await asyncio.to_thread(self.routes.remove, name, canon(view.pod_cidrs),
                                                     uid=view.uid or None, provider_id=view.provider_id)
                    await self._post_limit_events(self._take_capacity(result, full=False))
                    status = result.nodes.get(name)
                    if status is not None and not status.ok:
                        raise RuntimeError(status.message)
                except Exception as exc:
                    log.warning("deleting routes of gone node %s failed (block kept): %s", name, exc)
                    continue
            async with self.lock:
                released = self.book.release(name)
            self.gone.pop(name, None)
            self._not_waiting(name)
            self._node_locks.pop(name, None)
            self.route_status.pop(name, None)
            self.findings.pop(name, None)
            self._written.pop(name, None)
            if released is not None:
                released_any = True
                self.metrics.releases.labels(released.pool or "-").inc()
            self._dirty.set()
        if serve and released_any:
            await self._after_release()
        return released_any

    async def _after_release(self) -> None:
        """Blocks and routes were freed: serve nodes waiting for a block, and for route-table room."""
        await self._serve_waiting()
        if any(s.message.startswith(REASON_ROUTE_LIMIT) for s in self.route_status.values() if not s.ok):
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

    # ------------------------------------------------------------------------------------ routes
    async def resync(self, initial: bool = False) -> None:
        """Full pass: one list per table, the pure diff, driver actions; conditions and pool facts updated."""
        started = time.monotonic()
        live = self.node_views()
        async with self.lock:
            for a in self.allocator.allocations():
                if a.node not in live and not a.node.startswith(STALE_PREFIX) and a.node not in self.gone:
                    self.gone[a.node] = NodeView(a.node, "", None, {}, a.cidrs, "", False, None)
        if self.routes is None:
            await self._remove_gone()
            return
        nodes = [NodeRoutes(v.name, v.uid, v.provider_id, canon(v.pod_cidrs))
                 for v in live.values() if v.pod_cidrs and self._cidr_problem(v.name) is None]
        if self.fenced:
            return
        try:
            result = await asyncio.to_thread(self.routes.sync, nodes)
        except Exception as exc:
            log.warning("route resync failed: %s", exc)
            if initial:
                raise
            return
        self.resyncs += 1
        await self._post_limit_events(self._take_capacity(result, full=True))
        await self._hold_stale_blocks(result)
        for name, status in result.nodes.items():
            view = live.get(name)
            if view is not None:
                await self._apply_route_status(view, status)
        await self._remove_gone(serve=not initial)
        if not initial:  # nodes whose last event found no room or no pool: try again
            await self._serve_waiting()
        self._dirty.set()
        self.metrics.reconcile.labels("resync").observe(time.monotonic() - started)

    async def _hold_stale_blocks(self, result: SyncResult) -> None:
        """Keep blocks whose stale route could not be deleted occupied, so they are not handed out again."""
        failed = {canon([a.destination])[0] for a, _ in result.failed if a.kind == "delete"}
        occupy, release = stale_placeholder_changes(failed, self.stale_placeholders)
        async with self.lock:
            for dest in occupy:
                holder = STALE_PREFIX + dest
                if self.allocator.allocation_of(holder) is None:
                    self.allocator.occupy(holder, [dest])
            for dest in release:
                self.allocator.release(STALE_PREFIX + dest)
        self.stale_placeholders = failed

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            try:
                await self.resync()
            except Exception:
                log.exception("resync pass failed")

    async def _apply_route_status(self, view: NodeView, status: NodeRouteStatus) -> None:
        """Turn a per-node route result into the node's condition (written only when it changes)."""
        state = route_state(status.ok, status.reason, status.message)
        previous = self.route_status.get(view.name)
        self.route_status[view.name] = state
        if not state.ok and previous != state:
            await self._event_node(view, "Warning", EVENT_FAILED_TO_CREATE_ROUTE, state.message)
        await self._set_condition(view, state)

    async def _set_condition(self, view: NodeView, state: NetworkState) -> None:
        if condition_is_current(view.condition, state):
            self._written.pop(view.name, None)
            return
        written = self._written.get(view.name)
        if written is not None and written[0] == state and not newer(view.resource_version, written[1]):
            return  # we wrote it; the watch has not brought that version yet
        try:
            condition = kube.network_condition(state.ok, state.reason, state.message)
            body = await kube.patch_node_condition(self.client, view.name, condition)
        except ApiError as exc:
            if exc.status != 404:
                log.warning("patching NetworkUnavailable of node %s failed: %s", view.name, exc)
            return
        self.metrics.node_writes.labels("condition").inc()
        self._written[view.name] = (state, str((body.get("metadata") or {}).get("resourceVersion", "")))

    # ------------------------------------------------------------------------------- pool status
    def pool_facts(self, view: PoolView) -> PoolFacts:
        """Everything the pool's status reports, from the allocator, route results and warnings."""
        facts = PoolFacts(view.name, view.generation, deleting=view.deleting)
        problems = self.pool_problems.get(view.name) or []
        if problems:
            facts.invalid = "; ".join(problems)
        try:
            usage = self.allocator.usage(view.name)
            facts.allocated, facts.capacity, facts.free = usage.allocated, usage.capacity, usage.free
            holders = usage.nodes
        except KeyError:
            holders = tuple(a.node for a in self.allocator.allocations() if a.pool == view.name)
            facts.allocated = len(holders)
        facts.holders = tuple(n for n in holders if not n.startswith(STALE_PREFIX))
        if facts.deleting:
            facts.holder_cidrs = {n: a.cidrs for n in facts.holders
                                  if (a := self.allocator.allocation_of(n)) is not None}
        facts.routes_programmed = sum(1 for n in facts.holders if (s := self.route_status.get(n)) and s.ok)
        waiting = self.exhausted.get(view.name) or {}
        if facts.free == 0 and waiting:  # full, and someone waits (room again: they are served at once)
            facts.exhausted = f"{len(waiting)} node(s) wait for a block: " + next(iter(waiting.values()))
        facts.tables = [{"id": t.table, "used": t.used, "limit": t.limit} for t in self.tables]
        for w in self.warnings:
            if w.kind == "reached":
                facts.reached = w.message
            elif w.kind == "nearing" and not facts.nearing:
                facts.nearing = w.message
        if facts.reached and not facts.nearing:
            facts.nearing = facts.reached
        return facts

    def _route_metrics(self) -> None:
        """Routes desired (every routable node block in every table) and actual (those programmed)."""
        tables = max(1, len(self.tables))
        desired = actual = 0
        for view in self.node_views().values():
            if view.pod_cidrs and self._cidr_problem(view.name) is None:
                desired += len(view.pod_cidrs) * tables
                state = self.route_status.get(view.name)
                if state is not None and state.ok:
                    actual += len(view.pod_cidrs) * tables
        self.metrics.routes_desired.set(desired)
        self.metrics.routes_actual.set(actual)

    async def flush_pool_status(self) -> None:
        """Write each pool's status when it differs from what the pool shows (or we last wrote)."""
        self._route_metrics()
        for view in self.pool_views().values():
            facts = self.pool_facts(view)
            self.metrics.set_pool(view.name, facts.allocated, facts.free, facts.capacity)
            current = (view.body.get("status") or {})
            last = self._pool_written.get(view.name)
            new = pool_status(facts, current or last, kube.now_rfc3339())
            if not status_differs(current, new) or (last is not None and not status_differs(last, new)):
                continue
            try:
                await kube.patch_pool_status(self.client, view.name, new)
                self._pool_written[view.name] = new
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("patching status of pool %s failed: %s", view.name, exc)

    async def _pool_status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.3)  # debounce a burst of node events into one write per pool
            self._dirty.clear()
            try:
                await self.flush_pool_status()
            except Exception:
                log.exception("pool status update failed")

    # ------------------------------------------------------------------------------------ events
    async def _event_node(self, view: NodeView, etype: str, reason: str, message: str) -> None:
        await self.events.post({"kind": "Node", "apiVersion": "v1", "name": view.name, "uid": view.uid},
                               etype, reason, message)

    async def _event_pool(self, name: str, etype: str, reason: str, message: str) -> None:
        view = self.pool_views().get(name)
        uid = ((view.body.get("metadata") or {}).get("uid", "")) if view else ""
        await self.events.post({"kind": POOL_KIND, "name": name, "uid": uid}, etype, reason, message)
