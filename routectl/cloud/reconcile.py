"""Route reconciler: nodes -> desired routes -> diff against the cloud -> limit fit -> bounded apply.

The controller's only entry into the cloud. `plan()` is read-only, `sync()` is the periodic full pass
(one list per table), `ensure()` / `remove()` serve events from a cached view.

Cache correctness: routectl runs ONE active controller (the Lease fences any standby), and every
route change it makes goes through this object, which updates the cached view after each successful
call while holding its lock. So the view can only drift through changes made by others (manual edits,
instances terminated -> blackholes). Drift costs at most one resync period: a route the view wrongly
believes present is re-created at the next `sync()` (which re-lists), and a route the view wrongly
believes absent produces an idempotent create (409 alreadyExists / RouteAlreadyExists with the same
target is success). Deletes never act on a view alone without ownership evidence from a list; any
failed call drops the view so the next operation re-lists. Resolved next hops are cached per node
identity (providerID + uid) with a TTL, and dropped when the node's route turns into a blackhole.

Locking: every cloud mutation and every change of the cached state runs under `_lock`, but a full
`sync()` holds it only in steps (planning, then each chunk of actions), never across its listing or the
whole apply, so event work (`ensure()`/`remove()`) is served between the steps instead of waiting for
the sync. Keys that event work touches while a sync runs are recorded; the sync's listing is merged with
the view for them and it drops its planned actions (and per-node statuses) on them: the event path
made them right more recently than the sync's list saw them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from routectl.cloud.base import (
    REASON_CLOUD_ERROR,
    REASON_NO_POD_CIDR,
    REASON_ROUTE_LIMIT,
    CloudError,
    NodeProblem,
    RouteDriver,
    RouteLimitError,
)
from routectl.cloud.caller import FencedError
from routectl.cloud.limits import cap_for, fit_creates, ways_out
from routectl.constants import DEFAULT_ROUTE_LIMIT_WARNING_PERCENT, REASON_ROUTE_CREATED
from routectl.routes.diff import Key, diff_routes, route_key
from routectl.routes.model import (
    CallStats,
    CloudRoute,
    LimitWarning,
    NodeRoutes,
    NodeRouteStatus,
    RouteAction,
    TableCapacity,
    canonical_cidr,
    family_of,
    inside_any,
    is_cidr,
    parse_pools,
)

REASON_ROUTE_PENDING = "RoutePending"
REASON_ROUTE_DELETED = "RouteDeleted"
REASON_CIDR_OUTSIDE = "CIDROutsideClusterCIDRs"
REASON_DUPLICATE_CIDR = "DuplicatePodCIDR"


@dataclass
class RoutePlan:
    """What a sync would do: actions that fit, refused creates, capacities, warnings, per-node status."""

    actions: list[RouteAction]
    keeps: list[RouteAction]
    refused: list[RouteAction]
    tables: list[TableCapacity]
    warnings: list[LimitWarning]
    nodes: dict[str, NodeRouteStatus]
    desired: dict[Key, tuple[str, str]]
    routes: list[CloudRoute]
    calls: CallStats = field(default_factory=CallStats)


@dataclass
class SyncResult:
    """Outcome of sync/ensure/remove: per-node status, capacities, warnings, what was done, calls made."""

    nodes: dict[str, NodeRouteStatus]
    tables: list[TableCapacity]
    warnings: list[LimitWarning]
    actions: list[RouteAction]
    failed: list[tuple[RouteAction, str]]
    refused: list[RouteAction]
    calls: CallStats
    routes_programmed: int


def oldest_first(creates: list[RouteAction], nodes: Sequence[NodeRoutes]) -> list[RouteAction]:
    """Creates ordered by their node's age (creationTimestamp), oldest first, nodes of unknown age last;
    a stable sort, so the address order is kept among equals (and entirely when no age is known)."""
    age = {n.name: n.created for n in nodes}
    return sorted(creates, key=lambda a: (not age.get(a.node), age.get(a.node) or ""))


def _calls_delta(before: CallStats, after: CallStats) -> CallStats:
    calls = {k: v - before.calls.get(k, 0) for k, v in after.calls.items() if v - before.calls.get(k, 0)}
    return CallStats(calls, after.throttled - before.throttled, after.errors - before.errors)


class RouteReconciler:
    """Keeps the cloud's routes equal to what the nodes want, within the route limit (module docstring)."""

    def __init__(
        self,
        driver: RouteDriver,
        cluster_cidrs: Sequence[str],
        warn_percent: int = DEFAULT_ROUTE_LIMIT_WARNING_PERCENT,
        concurrency: int = 16,
        resolve_ttl: float = 600.0,
    ) -> None:
        if not cluster_cidrs:
            raise ValueError("route reconciler needs at least one cluster CIDR")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if not 0 < warn_percent <= 100:
            raise ValueError(f"warn_percent must be in 1..100, got {warn_percent}")
        self.driver = driver
        self.cluster_cidrs = [canonical_cidr(c) for c in cluster_cidrs]
        self.pools = parse_pools(self.cluster_cidrs)
        self.warn_percent = warn_percent
        self.concurrency = concurrency
        self.resolve_ttl = resolve_ttl
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()  # one full sync at a time
        self._touched: set[Key] | None = None  # while a sync runs: keys event work touched since it began
        self._event_creates: dict[tuple[str, str], int] = defaultdict(int)  # routes event work created
        self.sync_chunk = max(1, 2 * concurrency)  # actions a sync runs per hold of the lock
        self._view: list[CloudRoute] | None = None
        self._caps: list[TableCapacity] | None = None
        self._targets: dict[str, tuple[tuple[str | None, str], str, float]] = {}
        # node -> (its route keys, its next hop) as last planned; a tuple per node (kept for the node's
        # life: a set costs four times as much for the one or two keys a node has)
        self._node_keys: dict[str, tuple[tuple[Key, ...], str | None]] = {}
        self._view_dirty = False
        self._pool: ThreadPoolExecutor | None = None
        self._fence: Callable[[], bool] = lambda: False

    # ----- public API -----
    def set_fence(self, fenced: Callable[[], bool]) -> None:
        """Refuse every cloud mutation once `fenced()` is true (leadership lost), checked right before
        each call the driver makes, so a sync already running stops at its next mutation."""
        self._fence = fenced
        caller = getattr(self.driver, "caller", None)
        if caller is not None:
            caller.fence = fenced

    def plan(self, nodes: Sequence[NodeRoutes]) -> RoutePlan:
        """Read-only plan: one list per table, resolve next hops (no prerequisite fixing), diff, limit fit."""
        with self._lock:
            before = self.driver.calls.snapshot()
            routes, caps = self._refresh()
            plan = self._plan(nodes, routes, caps, scoped=False, check_only=True)
            plan.calls = _calls_delta(before, self.driver.calls.snapshot())
            return plan

    def track_events(self) -> None:
        """Start recording event work for the next `sync(tracked=True)`: a caller that builds the sync's
        node list AFTER this call cannot lose a node routed by ensure() in between (its keys are left
        alone by the sync), and a node routed before it is in that list."""
        with self._lock:
            self._touched, self._event_creates = set(), defaultdict(int)

    def sync(self, nodes: Sequence[NodeRoutes], tracked: bool = False) -> SyncResult:
        """Full pass: list, plan, apply (deletes first so freed slots are reused); refreshes the cache.

        Per-node and per-route failures land in the result; only a failure to list the tables or read
        the capacity raises CloudError (nothing was changed then). Takes the reconciler lock only in
        steps (module docstring): event-driven ensure()/remove() run between them. `tracked`: event work
        has been recorded since `track_events()` (called before `nodes` was built), keep that record.
        """
        with self._sync_lock:
            with self._lock:
                before = self.driver.calls.snapshot()
                if not tracked or self._touched is None:
                    self._touched, self._event_creates = set(), defaultdict(int)
            try:
                routes = self.driver.list_routes()  # events go on meanwhile; merged below
                caps = self.driver.capacity(routes)
                with self._lock:
                    routes, caps = self._merge_listed(routes, caps)
                    self._view, self._caps = list(routes), list(caps)
                    plan = self._plan(nodes, routes, caps, scoped=False, route_statuses=False)
                return self._apply(plan, nodes, before, chunked=True)
            finally:
                with self._lock:
                    self._touched = None

    def _merge_listed(self, routes: list[CloudRoute],
                      caps: list[TableCapacity]) -> tuple[list[CloudRoute], list[TableCapacity]]:
        """A sync's listing, corrected for the event work done while it listed: for keys events touched,
        the view (updated by that work) is newer than the list; their creates count as used (the list
        and the quota read may or may not have seen them: counting them errs on the safe side)."""
        touched = self._touched or set()
        if touched and self._view is not None:
            routes = [r for r in routes if route_key(r) not in touched] + \
                     [r for r in self._view if route_key(r) in touched]
        created = self._event_creates

        def extra(c: TableCapacity) -> int:  # a shared count (family None) takes both families' creates
            if c.family is not None:
                return created.get((c.table, c.family), 0)
            return sum(n for (table, _), n in created.items() if table == c.table)

        caps = [replace(c, used=c.used + extra(c)) for c in caps]
        return routes, caps

    def _touch(self, keys: set[Key], done: list[RouteAction]) -> None:
        """Record event work on `keys` for a running sync (which then leaves those keys alone)."""
        if self._touched is not None:
            self._touched |= keys
            for a in done:
                if a.kind == "create":  # counted per (table, family); a shared count sums its table's
                    self._event_creates[(a.table, family_of(a.destination))] += 1

    def ensure(self, nodes: Sequence[NodeRoutes]) -> SyncResult:
        """Event path: make these nodes' routes right using the cached view (lists only if there is none).

        Deletes only extra owned copies of these nodes' own destinations; stale routes of other nodes wait
        for `sync()`/`remove()`.
        """
        with self._lock:
            before = self.driver.calls.snapshot()
            if self._view is None or self._caps is None:
                self._refresh()
            assert self._view is not None and self._caps is not None
            plan = self._plan(nodes, list(self._view), list(self._caps), scoped=True, route_statuses=False)
            result = self._apply(plan, nodes, before)
            self._touch(set(plan.desired) | {(a.table, a.destination) for a in plan.actions}, result.actions)
            return result

    def remove(self, node_name: str, pod_cidrs: Sequence[str] = (), *, uid: str | None = None,
               provider_id: str | None = None) -> SyncResult:
        """Delete the routes of a node that is gone (its block may be released once this reports ok).

        Only routes provably the gone node's are deleted: owned routes to its last known next hop, or
        blackholes. When this reconciler never resolved the node (e.g. after a restart) the next hop is
        unknown: then only blackholes and, on drivers that name routes per node (GCE), routes whose name
        is exactly the gone node's route name (needs `uid`) go. Anything else is left to `sync()`, which
        never deletes a route some node wants: the block may meanwhile be routed to another node.
        `provider_id` completes the node's identity for drivers that derive route names from it.
        """
        with self._lock:
            before = self.driver.calls.snapshot()
            if self._view is None or self._caps is None:
                self._refresh()
            assert self._view is not None
            known, target = self._node_keys.get(node_name, ((), None))
            keys = set(known)
            for c in pod_cidrs:
                keys |= {(t, canonical_cidr(c)) for t in self.driver.list_tables()}
            names = self._route_names(node_name, pod_cidrs, uid, provider_id) if target is None else set()
            candidates = [r for r in self._view if r.owned and route_key(r) in keys]
            victims = [r for r in candidates if r.state != "active"
                       or (target is not None and r.target == target)
                       or (r.name is not None and r.name in names)]
            left = len(candidates) - len(victims)
            actions = [RouteAction("delete", r.table, r.destination, r.target, node_name, r) for r in victims]
            done, failed = self._run(actions, {}, {})
            self._update_view(done)
            self._touch(keys, done)
            if not failed:
                self._node_keys.pop(node_name, None)
                self._targets.pop(node_name, None)
            if failed:
                status = NodeRouteStatus(False, REASON_CLOUD_ERROR, "; ".join(m for _, m in failed))
            else:
                msg = f"{len(done)} route(s) deleted"
                if left:
                    msg += (f"; {left} route(s) to its block(s) not provably this node's "
                            "(next hop unknown) are left to the next sync")
                status = NodeRouteStatus(True, REASON_ROUTE_DELETED, msg)
            return SyncResult({node_name: status}, list(self._caps or []), [], done, failed, [],
                              _calls_delta(before, self.driver.calls.snapshot()), 0)

    def _route_names(self, node_name: str, pod_cidrs: Sequence[str], uid: str | None,
                     provider_id: str | None) -> set[str]:
        """The names the driver gives this node's routes (drivers with per-node names, and a known uid)."""
        namer: Callable[[NodeRoutes, str], str] | None = getattr(self.driver, "route_name", None)
        if namer is None or not uid:
            return set()
        cidrs = tuple(canonical_cidr(c) for c in pod_cidrs if _valid(c))
        node = NodeRoutes(node_name, uid, provider_id, cidrs)
        return {namer(node, c) for c in cidrs}

    def set_cluster_cidrs(self, cluster_cidrs: Sequence[str], warn_percent: int | None = None) -> None:
        """Pools grew or shrank: adopt the new cluster CIDRs (also the driver's ownership pools, AWS)
        and drop the cached view, whose ownership flags were computed for the old CIDRs."""
        pools = parse_pools(list(cluster_cidrs))
        with self._lock:
            self.cluster_cidrs = [canonical_cidr(c) for c in cluster_cidrs]
            self.pools = pools
            if warn_percent is not None:
                self.warn_percent = warn_percent
            if hasattr(self.driver, "pools"):
                self.driver.pools = pools
            self._view = None
            self._caps = None

    def set_node_masks(self, masks: Mapping[str, int]) -> None:
        """Pool CIDR -> node mask: drivers that decide ownership by shape (AWS: exactly one node block)
        adopt them; the cached view, whose ownership flags used the old masks, is dropped."""
        with self._lock:
            if hasattr(self.driver, "node_masks"):
                self.driver.node_masks = dict(masks)
            self._view = None
            self._caps = None

    def invalidate(self) -> None:
        """Drop the cached view and next hops (the next operation re-lists and re-resolves)."""
        with self._lock:
            self._view = None
            self._caps = None
            self._targets.clear()

    def close(self) -> None:
        """Stop the worker threads (a later call starts new ones)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    # ----- internals -----
    def _executor(self) -> ThreadPoolExecutor:
        """Long-lived workers: drivers keep per-thread clients, so connections are reused across syncs."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="routectl-routes")
        return self._pool

    def _refresh(self) -> tuple[list[CloudRoute], list[TableCapacity]]:
        routes = self.driver.list_routes()
        caps = self.driver.capacity(routes)
        self._view, self._caps = list(routes), list(caps)
        return routes, caps

    def _resolve(self, nodes: Sequence[NodeRoutes], check_only: bool) -> dict[str, str | NodeProblem]:
        now = time.monotonic()
        out: dict[str, str | NodeProblem] = {}
        todo: list[NodeRoutes] = []
        for n in nodes:
            ident = (n.provider_id, n.uid)
            cached = self._targets.get(n.name)
            if cached and cached[0] == ident and cached[2] > now:
                out[n.name] = cached[1]
            else:
                todo.append(n)
        if not todo:
            return out
        kw: dict[str, Any] = {"check_only": True} if check_only else {}
        many: Callable[..., dict[str, str | NodeProblem]] | None = getattr(self.driver, "resolve_many", None)
        if many is not None:
            try:
                got = many(todo, **kw)
            except CloudError as e:
                got = {n.name: NodeProblem(REASON_CLOUD_ERROR, str(e)) for n in todo}
        else:
            def one(n: NodeRoutes) -> str | NodeProblem:
                try:
                    return self.driver.resolve(n, **kw)
                except NodeProblem as p:
                    return p
                except CloudError as e:
                    return NodeProblem(REASON_CLOUD_ERROR, str(e))

            got = dict(zip([n.name for n in todo], self._executor().map(one, todo), strict=True))
        for n in todo:
            res = got.get(n.name, NodeProblem(REASON_CLOUD_ERROR, "not resolved"))
            out[n.name] = res
            if isinstance(res, str) and not check_only:
                self._targets[n.name] = ((n.provider_id, n.uid), res, now + self.resolve_ttl)
        return out

    def _plan(self, nodes: Sequence[NodeRoutes], routes: list[CloudRoute], caps: list[TableCapacity], *,
              scoped: bool, check_only: bool = False, route_statuses: bool = True) -> RoutePlan:
        """Diff and limit fit. `route_statuses=False`: the plan's statuses hold only per-node problems (the
        caller's _apply() derives every other node's status from what was done)."""
        tables = self.driver.list_tables()
        statuses: dict[str, NodeRouteStatus] = {}
        # a desired destination that is a blackhole: the node's instance may have changed; re-resolve it
        blackholes = {r.destination for r in routes if r.owned and r.state != "active"}
        for n in nodes if blackholes else ():
            if any(canonical_cidr(c) in blackholes for c in n.pod_cidrs if _valid(c)):
                self._targets.pop(n.name, None)
        candidates: list[NodeRoutes] = []
        claimed: dict[str, str] = {}
        for n in sorted(nodes, key=lambda n: n.name):
            if not n.pod_cidrs:
                statuses[n.name] = NodeRouteStatus(False, REASON_NO_POD_CIDR, "node has no podCIDR yet")
                continue
            bad = [c for c in n.pod_cidrs if not _valid(c) or not inside_any(c, self.pools)]
            if bad:
                statuses[n.name] = NodeRouteStatus(
                    False, REASON_CIDR_OUTSIDE,
                    f"pod CIDR(s) {', '.join(bad)} not inside the cluster CIDRs "
                    f"{', '.join(self.cluster_cidrs)}")
                continue
            canon = [canonical_cidr(c) for c in n.pod_cidrs]
            dup = [c for c, k in zip(n.pod_cidrs, canon, strict=True) if claimed.get(k, n.name) != n.name]
            if dup:
                statuses[n.name] = NodeRouteStatus(
                    False, REASON_DUPLICATE_CIDR,
                    f"pod CIDR(s) {', '.join(dup)} also claimed by node {claimed[canonical_cidr(dup[0])]}")
                continue
            for k in canon:
                claimed[k] = n.name
            candidates.append(n)
        resolved = self._resolve(candidates, check_only)
        desired: dict[Key, tuple[str, str]] = {}
        node_keys: dict[str, set[Key]] = defaultdict(set)
        for n in candidates:
            res = resolved[n.name]
            if isinstance(res, NodeProblem):
                statuses[n.name] = NodeRouteStatus(False, res.reason, res.message)
                continue
            for t in tables:
                for c in n.pod_cidrs:
                    key = (t, canonical_cidr(c))
                    desired[key] = (n.name, res)
                    node_keys[n.name].add(key)
            if not check_only:
                self._node_keys[n.name] = (tuple(node_keys[n.name]), res)
        # Nodes that still exist but could not be resolved (transient cloud error, instance missing,
        # prerequisite) keep whatever routes they have: only nodes that are gone lose routes (as in the
        # cloud-provider route controller); their status says why nothing was changed.
        protected = {(t, canonical_cidr(c)) for n in nodes if n.name not in node_keys
                     for c in n.pod_cidrs if _valid(c) for t in tables}
        actual = [r for r in routes if route_key(r) not in protected or route_key(r) in desired] \
            if protected else list(routes)
        if scoped:
            actual = [r for r in actual if route_key(r) in desired]
        actions = diff_routes(desired, actual, self.cluster_cidrs)
        deletes = [a for a in actions if a.kind == "delete"]
        creates = oldest_first([a for a in actions if a.kind == "create"], candidates)
        fit = fit_creates(creates, deletes, caps, self.warn_percent)
        keeps = [a for a in actions if a.kind == "keep"]
        todo = deletes + [a for a in actions if a.kind == "replace"] + fit.fits
        keeps_of, refused_of = _by_node(keeps), _by_node(fit.refused)
        for n in candidates if route_statuses else ():
            if n.name in statuses:
                continue
            statuses[n.name] = self._node_status(n.name, node_keys[n.name], keeps_of.get(n.name, []), [],
                                                 refused_of.get(n.name, []), [], fit.warnings)
        return RoutePlan(todo, keeps, fit.refused, caps, fit.warnings, statuses, desired, routes)

    @staticmethod
    def _node_status(name: str, keys: set[Key], keeps: list[RouteAction], done: list[RouteAction],
                     refused: list[RouteAction], failed: list[tuple[RouteAction, str]],
                     warnings: list[LimitWarning]) -> NodeRouteStatus:
        """One node's route status. Callers pass the node's own actions (grouped once with `_by_node`):
        scanning every node's actions per node made a resync O(N^2)."""
        ref = [a for a in refused if a.node == name]
        if ref:
            ids = {a.table for a in ref} | {f"{a.table}/{family_of(a.destination)}" for a in ref}
            msgs = [w.message for w in warnings if w.kind == "reached" and w.table in ids]
            return NodeRouteStatus(False, REASON_ROUTE_LIMIT,
                                   msgs[0] if msgs else f"route limit reached for {ref[0].destination}")
        bad = [m for a, m in failed if a.node == name]
        if bad:
            return NodeRouteStatus(False, REASON_CLOUD_ERROR, bad[0])
        ok = {(a.table, a.destination) for a in keeps + done if a.node == name and a.kind != "delete"}
        if keys <= ok:
            return NodeRouteStatus(True, REASON_ROUTE_CREATED, f"{len(keys)} route(s) programmed")
        return NodeRouteStatus(False, REASON_ROUTE_PENDING, f"{len(keys - ok)} route(s) not programmed yet")

    def _run(self, actions: list[RouteAction], nodes: dict[str, NodeRoutes],
             full: dict[tuple[str, str | None], int | None]) -> tuple[list[RouteAction],
                                                                     list[tuple[RouteAction, str]]]:
        """Execute actions with bounded concurrency; RouteLimitError marks a table (or one IP family of
        it) full: no more attempts there. `full` maps (table, family or None) to the limit the cloud
        refused at, when known."""
        done: list[RouteAction] = []
        failed: list[tuple[RouteAction, str]] = []
        lock = threading.Lock()

        def one(a: RouteAction) -> None:
            try:
                if self._fence():
                    raise FencedError(f"{a.kind} {a.destination} refused: not the leader any more")
                if a.kind == "delete":
                    assert a.route is not None
                    self.driver.delete(a.route)
                    result = a
                else:
                    if a.kind == "create" and ((a.table, None) in full
                                               or (a.table, family_of(a.destination)) in full):
                        raise RouteLimitError(f"route table {a.table} is full")
                    node = nodes[a.node or ""]
                    assert a.target is not None
                    if a.kind == "create":
                        new = self.driver.create(a.table, a.destination, a.target, node)
                    else:
                        assert a.route is not None
                        new = self.driver.replace(a.route, a.target, node)
                    route = new if isinstance(new, CloudRoute) else CloudRoute(
                        a.table, a.destination, a.target, owned=True, node=a.node)
                    result = RouteAction(a.kind, a.table, a.destination, a.target, a.node, route)
                with lock:
                    done.append(result)
            except RouteLimitError as e:
                with lock:
                    key = (a.table, e.family)
                    if e.limit is not None or key not in full:
                        full[key] = e.limit
                    failed.append((a, f"{REASON_ROUTE_LIMIT}: {e}"))
            except Exception as e:  # one node's failure must not stop the others
                with lock:
                    failed.append((a, f"{type(e).__name__}: {e}"))
                    if a.node:
                        self._targets.pop(a.node, None)

        if actions:
            list(self._executor().map(one, actions))
        if failed:
            self._view_dirty = True
        return done, failed

    def _update_view(self, done: list[RouteAction]) -> None:
        if self._view is None:
            return
        if self._view_dirty:
            self._view, self._caps, self._view_dirty = None, None, False
            return
        gone = {id(a.route) for a in done if a.kind in ("delete", "replace") and a.route is not None}
        replaced = {(a.table, a.destination) for a in done if a.kind == "replace"}
        view = [r for r in self._view if id(r) not in gone]
        # a replace returns the new route; drop the old object by key as a fallback
        view = [r for r in view if not (r.owned and route_key(r) in replaced)]
        view += [a.route for a in done if a.kind in ("create", "replace") and a.route is not None]
        self._view = view
        if self._caps is not None:
            caps = {c.key: c for c in self._caps}
            delta: dict[tuple[str, str | None], int] = defaultdict(int)
            for a in done:
                cap = cap_for(caps, a.table, a.destination)
                if cap is not None:
                    delta[cap.key] += {"create": 1, "delete": -1}.get(a.kind, 0)
            self._caps = [replace(c, used=c.used + delta[c.key]) for c in self._caps]

    def _execute(self, actions: list[RouteAction], by_name: dict[str, NodeRoutes],
                 full: dict[tuple[str, str | None], int | None],
                 chunked: bool) -> tuple[list[RouteAction], list[tuple[RouteAction, str]], list[RouteAction]]:
        """Run actions (done, failed, refused late). Event path: at once, under the caller's lock. A sync:
        chunk by chunk, each under the lock, dropping actions on keys event work has touched meanwhile and
        fitting its creates again to the capacity as it is now (event work may have used the room)."""
        if not chunked:
            done, failed = self._run(actions, by_name, full)
            self._update_view(done)
            return done, failed, []
        done, failed, late = [], [], []
        for i in range(0, len(actions), self.sync_chunk):
            with self._lock:
                touched = self._touched or set()
                part = [a for a in actions[i:i + self.sync_chunk] if (a.table, a.destination) not in touched]
                creates = [a for a in part if a.kind == "create"]
                if creates and self._caps is not None:
                    fit = fit_creates(creates, [], self._caps, self.warn_percent)
                    late += fit.refused
                    part = [a for a in part if a.kind != "create"] + fit.fits
                d, f = self._run(part, by_name, full)
                self._update_view(d)
            done += d
            failed += f
        return done, failed, late

    def _apply(self, plan: RoutePlan, nodes: Sequence[NodeRoutes], before: CallStats,
               chunked: bool = False) -> SyncResult:
        by_name = {n.name: n for n in nodes}
        deletes = [a for a in plan.actions if a.kind == "delete"]
        rest = [a for a in plan.actions if a.kind != "delete"]
        full: dict[tuple[str, str | None], int | None] = {}
        done, failed, late = self._execute(deletes, by_name, full, chunked)
        # A destination whose (stale) route could not be deleted gets no second route: on GCE both would
        # carry its traffic (ECMP), half of it to where the block used to live.
        stuck = {(a.table, a.destination) for a, _ in failed}
        blocked = [a for a in rest if a.kind != "keep" and (a.table, a.destination) in stuck]
        if blocked:
            rest = [a for a in rest if a not in blocked]
            failed += [(a, f"a stale route for {a.destination} could not be deleted; not adding another one "
                           "beside it") for a in blocked]
        done2, failed2, late2 = self._execute(rest, by_name, full, chunked)
        done += done2
        failed += failed2
        # creates the cloud refused for the limit count as refused (they were not blind: capacity said yes)
        limit_failed = [a for a, m in failed if m.startswith(REASON_ROUTE_LIMIT)]
        refused = plan.refused + late + late2 + limit_failed
        failed = [(a, m) for a, m in failed if not m.startswith(REASON_ROUTE_LIMIT)]
        warnings = list(plan.warnings)
        if limit_failed and not any(w.kind == "reached" for w in warnings):
            caps = {c.key: c for c in plan.tables}
            by_cap: dict[tuple[str, str | None], list[RouteAction]] = defaultdict(list)
            for a in limit_failed:
                c = cap_for(caps, a.table, a.destination)
                if c is not None:
                    by_cap[c.key].append(a)
            for key in sorted(by_cap, key=str):
                c = caps[key]
                seen = full.get((c.table, c.family)) or full.get((c.table, None))
                limit = seen if seen is not None else c.limit
                api = {"aws": "EC2", "gce": "GCE"}.get(c.provider, "the cloud")
                how = f" (limit learned from {api}: it refused the next route)" if seen is not None else ""
                msg = (f"{c.provider} route table {c.display_id}: the cloud refused new routes at "
                       f"{limit}{how}.{f' {c.note}.' if c.note else ''} Ways out: {ways_out(c, limit + 1)}.")
                warnings.append(LimitWarning("reached", c.display_id, limit, limit, msg, len(by_cap[key]),
                                             c.provider, c.quota_name, limit + 1))
        if limit_failed:  # the cloud just taught a limit: re-read, so the reported capacity says so
            with self._lock:
                try:
                    self._refresh()
                except CloudError:
                    self._view = self._caps = None
        statuses = dict(plan.nodes)
        route_reasons = (REASON_ROUTE_PENDING, REASON_ROUTE_CREATED, REASON_ROUTE_LIMIT)
        keys_of: dict[str, set[Key]] = defaultdict(set)
        for k, (n, _) in plan.desired.items():
            keys_of[n].add(k)
        keeps_of, done_of, refused_of = _by_node(plan.keeps), _by_node(done), _by_node(refused)
        failed_of: dict[str | None, list[tuple[RouteAction, str]]] = defaultdict(list)
        for a, m in failed:
            failed_of[a.node].append((a, m))
        with self._lock:  # event work on a node while this sync ran made its status newer than ours
            touched = set(self._touched or ()) if chunked else set()
        for name in by_name:
            if name in plan.nodes and plan.nodes[name].reason not in route_reasons:
                continue  # a per-node problem found while planning
            keys = keys_of.get(name, set())
            if touched and keys & touched:
                statuses.pop(name, None)
                continue
            statuses[name] = self._node_status(name, keys, keeps_of.get(name, []), done_of.get(name, []),
                                               refused_of.get(name, []), failed_of.get(name, []), warnings)
        programmed = len(plan.keeps) + sum(1 for a in done if a.kind in ("create", "replace"))
        tables = list(self._caps) if self._caps is not None else plan.tables
        return SyncResult(statuses, tables, warnings, done, failed, refused,
                          _calls_delta(before, self.driver.calls.snapshot()), programmed)


def _by_node(actions: list[RouteAction]) -> dict[str | None, list[RouteAction]]:
    """Actions grouped by the node they serve (one pass, for per-node statuses)."""
    out: dict[str | None, list[RouteAction]] = defaultdict(list)
    for a in actions:
        out[a.node].append(a)
    return out


_valid = is_cidr
