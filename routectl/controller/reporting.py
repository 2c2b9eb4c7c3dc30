"""Reporting: what the controller tells the cluster. Node conditions, pool status, Events and metrics.

It writes only what changed (conditions and pool status are compared with the object and with our last
write, because the watch lags our writes), and it never decides anything about blocks or routes: the
allocation and routing jobs hand it facts (route statuses, capacity, waiting nodes, pool problems).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from routectl.cloud.base import REASON_ROUTE_LIMIT
from routectl.constants import (
    EVENT_FAILED_TO_CREATE_ROUTE,
    EVENT_ROUTE_LIMIT_NEARING,
    EVENT_ROUTE_LIMIT_REACHED,
    POOL_KIND,
    TRANSPORT_ANNOTATION,
    TRANSPORT_OVERLAY,
)
from routectl.controller import kube
from routectl.controller.allocation import AllocationBook, newer
from routectl.controller.kube import ApiError, EventRecorder, KubeClient
from routectl.controller.metrics import Metrics
from routectl.controller.state import (
    IndexViews,
    NetworkState,
    NodeView,
    PoolFacts,
    PoolView,
    condition_is_current,
    merge_warnings,
    pool_status,
    route_state,
    status_differs,
)
from routectl.routes.fallback import REASON_ROUTE_OVERLAY, TransportDecision, decide, reached_for
from routectl.routes.model import LimitWarning, NodeRouteStatus, TableCapacity

if TYPE_CHECKING:
    from routectl.cloud.reconcile import SyncResult

log = logging.getLogger(__name__)

# Placeholder holders in the allocator for blocks still routed in the cloud to a node that is gone.
STALE_PREFIX = "route:"


def _waits_for_room(state: NetworkState) -> bool:
    """Whether a node's route state waits for route-table room (refused for the limit, or on the overlay)."""
    refused = not state.ok and state.message.startswith(REASON_ROUTE_LIMIT)
    return refused or state.reason == REASON_ROUTE_OVERLAY


class Reporter:
    """Conditions, pool status, Events and metrics for one controller."""

    def __init__(self, client: KubeClient, events: EventRecorder, metrics: Metrics, book: AllocationBook,
                 views: IndexViews) -> None:
        self.client = client
        self.events = events
        self.metrics = metrics
        self.book = book
        self.views = views
        self.route_status: dict[str, NetworkState] = {}
        self._room_waiters: set[str] = set()  # nodes whose last route state waits for table room
        self.pool_problems: dict[str, list[str]] = {}
        self.waiting: dict[str, dict[str, str]] = {}  # pool -> {node waiting for a block: why}
        self.tables: list[TableCapacity] = []
        self.warnings: list[LimitWarning] = []
        self.dirty = asyncio.Event()  # pool status may need a refresh
        self._written: dict[str, tuple[NetworkState, str]] = {}
        self._pool_written: dict[str, dict[str, Any]] = {}
        self.overlay_pools: set[str] = set()  # pools with spec.routeLimitFallback: Overlay
        self._on_overlay: dict[str, bool] = {}  # our last write of each node's transport annotation

    def touch(self) -> None:
        """Something a pool status shows changed: the status loop writes it soon (debounced)."""
        self.dirty.set()

    def forget(self, node: str) -> None:
        """A node is gone: drop what we remember about it."""
        self.not_waiting(node)
        self.route_status.pop(node, None)
        self._room_waiters.discard(node)
        self._written.pop(node, None)
        self._on_overlay.pop(node, None)

    # ------------------------------------------------------------------------------ waiting nodes
    def mark_waiting(self, pool: str, node: str, why: str) -> None:
        """`node` found no free block in `pool` (shown in the pool's Exhausted condition)."""
        self.waiting.setdefault(pool, {})[node] = why
        self.touch()

    def not_waiting(self, node: str) -> None:
        """`node` got a block (or is gone)."""
        for waiting in self.waiting.values():
            waiting.pop(node, None)

    def waits_for_room(self) -> bool:
        """True when a node's routes were refused for the route limit (freed room should be used soon)."""
        return bool(self._room_waiters)  # kept per write: a scan per release was O(N^2) in a mass deletion

    # ------------------------------------------------------------------------------------ events
    async def event_node(self, view: NodeView, etype: str, reason: str, message: str) -> None:
        """Queue an Event about a Node (posted by the recorder's own task: never delays a write)."""
        self.events.enqueue({"kind": "Node", "apiVersion": "v1", "name": view.name, "uid": view.uid},
                               etype, reason, message)

    async def event_pool(self, name: str, etype: str, reason: str, message: str) -> None:
        """Queue an Event about a PodCIDRPool."""
        view = self.views.pool_views().get(name)
        uid = ((view.body.get("metadata") or {}).get("uid", "")) if view else ""
        self.events.enqueue({"kind": POOL_KIND, "name": name, "uid": uid}, etype, reason, message)

    async def post_limit_events(self, warnings: list[LimitWarning]) -> None:
        """A Warning Event on every pool for each new route-limit warning (nearing or reached)."""
        for w in warnings:
            reason = EVENT_ROUTE_LIMIT_REACHED if w.kind == "reached" else EVENT_ROUTE_LIMIT_NEARING
            for pool in self.views.pool_views():
                await self.event_pool(pool, "Warning", reason, w.message)

    # ---------------------------------------------------------------------------------- capacity
    def take_capacity(self, result: SyncResult, full: bool) -> list[LimitWarning]:
        """Remember table fill and limit warnings from a route result (a full sync replaces warnings);
        return the warnings not known before."""
        known = {(w.kind, w.table, w.message) for w in self.warnings}
        self.metrics.count_route_ops(result)
        self.tables = list(result.tables)
        for t in self.tables:
            self.metrics.set_table(t.display_id, t.used, t.limit)
        self.warnings = merge_warnings(self.warnings, list(result.warnings), full)
        return [w for w in result.warnings if (w.kind, w.table, w.message) not in known]

    # -------------------------------------------------------------------------------- conditions
    async def apply_route_status(self, view: NodeView, status: NodeRouteStatus) -> None:
        """Turn a per-node route result into the node's transport (routes/fallback.py decides; only pools
        with routeLimitFallback: Overlay ever move a node) and its condition (written only on change)."""
        alloc = self.book.allocation_of(view.name)
        fallback = alloc is not None and alloc.pool in self.overlay_pools
        on_overlay = self._on_overlay.get(view.name, view.transport == TRANSPORT_OVERLAY)
        decision = decide(status, fallback, on_overlay, reached_for(status, self.warnings))
        if decision.changed and not await self._set_transport(view, decision):
            decision = TransportDecision(False, status)  # annotation not written: report the route verdict
        if decision.overlay:
            state = NetworkState(True, REASON_ROUTE_OVERLAY, decision.status.message)
        else:
            state = route_state(decision.status.ok, decision.status.reason, decision.status.message)
        previous = self.route_status.get(view.name)
        self.route_status[view.name] = state
        if _waits_for_room(state):
            self._room_waiters.add(view.name)
        else:
            self._room_waiters.discard(view.name)
        if not state.ok and previous != state:
            await self.event_node(view, "Warning", EVENT_FAILED_TO_CREATE_ROUTE, state.message)
        await self.set_condition(view, state)

    async def _set_transport(self, view: NodeView, decision: TransportDecision) -> bool:
        """Add or remove the node's transport annotation and post the decision's Event; False when the
        write failed (then nothing changed and the next sync tries again)."""
        try:
            await kube.patch_node_annotation(self.client, view.name, TRANSPORT_ANNOTATION,
                                             TRANSPORT_OVERLAY if decision.overlay else None)
        except ApiError as exc:
            if exc.status != 404:
                log.warning("writing the transport annotation of node %s failed: %s", view.name, exc)
            return False
        self.metrics.node_writes.labels("transport").inc()
        self._on_overlay[view.name] = decision.overlay
        if decision.event is not None:
            reason, message = decision.event
            await self.event_node(view, "Warning" if decision.overlay else "Normal", reason, message)
        return True

    async def set_condition(self, view: NodeView, state: NetworkState) -> None:
        """Write the node's NetworkUnavailable condition unless it (or our last write of it) says so."""
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
        allocator = self.book.allocator
        facts = PoolFacts(view.name, view.generation, deleting=view.deleting)
        problems = self.pool_problems.get(view.name) or []
        if problems:
            facts.invalid = "; ".join(problems)
        try:
            usage = allocator.usage(view.name)
            facts.allocated, facts.capacity, facts.free = usage.allocated, usage.capacity, usage.free
            holders = usage.nodes
        except KeyError:
            holders = tuple(a.node for a in allocator.allocations() if a.pool == view.name)
            facts.allocated = len(holders)
        facts.holders = tuple(n for n in holders if not n.startswith(STALE_PREFIX))
        if facts.deleting:
            facts.holder_cidrs = {n: a.cidrs for n in facts.holders
                                  if (a := allocator.allocation_of(n)) is not None}
        facts.routes_programmed = sum(1 for n in facts.holders if (s := self.route_status.get(n)) and s.ok
                                      and s.reason != REASON_ROUTE_OVERLAY)
        if view.name in self.overlay_pools:
            overlay = sum(1 for n in facts.holders if (s := self.route_status.get(n))
                          and s.reason == REASON_ROUTE_OVERLAY)
            facts.transports = (facts.routes_programmed, overlay)
        waiting = self.waiting.get(view.name) or {}
        if facts.free == 0 and waiting:  # full, and someone waits (room again: they are served at once)
            facts.exhausted = f"{len(waiting)} node(s) wait for a block: " + next(iter(waiting.values()))
        facts.tables = [t.status_entry() for t in self.tables]
        for w in self.warnings:
            if w.kind == "reached":
                facts.reached = w.message
            elif w.kind == "nearing" and not facts.nearing:
                facts.nearing = w.message
        if facts.reached and not facts.nearing:
            facts.nearing = facts.reached
        return facts

    def route_metrics(self, routable: dict[str, NodeView]) -> None:
        """Routes desired (every routable node block in every table) and actual (those programmed)."""
        tables = max(1, len(self.tables))
        desired = actual = 0
        for view in routable.values():
            desired += len(view.pod_cidrs) * tables
            state = self.route_status.get(view.name)
            if state is not None and state.ok and state.reason != REASON_ROUTE_OVERLAY:
                actual += len(view.pod_cidrs) * tables
        self.metrics.routes_desired.set(desired)
        self.metrics.routes_actual.set(actual)

    async def flush_pool_status(self) -> None:
        """Write each pool's status when it differs from what the pool shows (or we last wrote)."""
        for view in self.views.pool_views().values():
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
