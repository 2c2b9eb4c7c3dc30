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
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from routectl.cloud.limits import fit_creates, ways_out
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
        self._view: list[CloudRoute] | None = None
        self._caps: list[TableCapacity] | None = None
        self._targets: dict[str, tuple[tuple[str | None, str], str, float]] = {}
        self._node_keys: dict[str, tuple[set[Key], str | None]] = {}
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

    def sync(self, nodes: Sequence[NodeRoutes]) -> SyncResult:
        """Full pass: list, plan, apply (deletes first so freed slots are reused); refreshes the cache.

        Per-node and per-route failures land in the result; only a failure to list the tables or read
        the capacity raises CloudError (nothing was changed then). Holds the reconciler lock throughout:
        event-driven ensure()/remove() wait for a running sync (single writer).
        """
        with self._lock:
            before = self.driver.calls.snapshot()
            routes, caps = self._refresh()
            plan = self._plan(nodes, routes, caps, scoped=False)
            return self._apply(plan, nodes, before)

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
            plan = self._plan(nodes, list(self._view), list(self._caps), scoped=True)
            return self._apply(plan, nodes, before)

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
            keys, target = self._node_keys.get(node_name, (set(), None))
            keys = set(keys)
            for c in pod_cidrs:
                keys |= {(t, canonical_cidr(c)) for t in self.driver.list_tables()}
            names = self._route_names(node_name, pod_cidrs, uid, provider_id) if target is None else set()
            candidates = [r for r in self._view if r.owned and route_key(r) in keys]
            victims = [r for r in candidates if r.state != "active"
                       or (target is not None and r.target == target)
                       or (r.name is not None and r.name in names)]
            left = len(candidates) - len(victims)
            actions = [RouteAction("delete", r.table, r.destination, r.target, node_name, r) for r in victims]
            done, failed = self._run(actions, {}, set())
            self._update_view(done)
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
              scoped: bool, check_only: bool = False) -> RoutePlan:
        tables = self.driver.list_tables()
        statuses: dict[str, NodeRouteStatus] = {}
        # a desired destination that is a blackhole: the node's instance may have changed; re-resolve it
        blackholes = {r.destination for r in routes if r.owned and r.state != "active"}
        for n in nodes:
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
            dup = [c for c in n.pod_cidrs if claimed.get(canonical_cidr(c), n.name) != n.name]
            if dup:
                statuses[n.name] = NodeRouteStatus(
                    False, REASON_DUPLICATE_CIDR,
                    f"pod CIDR(s) {', '.join(dup)} also claimed by node {claimed[canonical_cidr(dup[0])]}")
                continue
            for c in n.pod_cidrs:
                claimed[canonical_cidr(c)] = n.name
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
                self._node_keys[n.name] = (node_keys[n.name], res)
        # Nodes that still exist but could not be resolved (transient cloud error, instance missing,
        # prerequisite) keep whatever routes they have: only nodes that are gone lose routes (as in the
        # cloud-provider route controller); their status says why nothing was changed.
        protected = {(t, canonical_cidr(c)) for n in nodes if n.name not in node_keys
                     for c in n.pod_cidrs if _valid(c) for t in tables}
        actual = [r for r in routes if route_key(r) not in protected or route_key(r) in desired]
        if scoped:
            actual = [r for r in actual if route_key(r) in desired]
        actions = diff_routes(desired, actual, self.cluster_cidrs)
        deletes = [a for a in actions if a.kind == "delete"]
        creates = oldest_first([a for a in actions if a.kind == "create"], candidates)
        fit = fit_creates(creates, deletes, caps, self.warn_percent)
        keeps = [a for a in actions if a.kind == "keep"]
        todo = deletes + [a for a in actions if a.kind == "replace"] + fit.fits
        for n in candidates:
            if n.name in statuses:
                continue
            statuses[n.name] = self._node_status(n.name, node_keys[n.name], keeps, [], fit.refused, [],
                                                 fit.warnings)
        return RoutePlan(todo, keeps, fit.refused, caps, fit.warnings, statuses, desired, routes)

    @staticmethod
    def _node_status(name: str, keys: set[Key], keeps: list[RouteAction], done: list[RouteAction],
                     refused: list[RouteAction], failed: list[tuple[RouteAction, str]],
                     warnings: list[LimitWarning]) -> NodeRouteStatus:
        ref = [a for a in refused if a.node == name]
        if ref:
            msgs = [w.message for w in warnings if w.kind == "reached" and w.table in {a.table for a in ref}]
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
             full: set[str]) -> tuple[list[RouteAction], list[tuple[RouteAction, str]]]:
        """Execute actions with bounded concurrency; RouteLimitError marks a table full (no more attempts)."""
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
                    if a.kind == "create" and a.table in full:
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
                    full.add(a.table)
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
        delta: dict[str, int] = defaultdict(int)
        for a in done:
            delta[a.table] += {"create": 1, "delete": -1}.get(a.kind, 0)
        self._view = view
        if self._caps is not None:
            self._caps = [TableCapacity(c.table, c.used + delta[c.table], c.limit, c.quota_name,
                                        c.raise_to_hint, c.provider) for c in self._caps]

    def _apply(self, plan: RoutePlan, nodes: Sequence[NodeRoutes], before: CallStats) -> SyncResult:
        by_name = {n.name: n for n in nodes}
        deletes = [a for a in plan.actions if a.kind == "delete"]
        rest = [a for a in plan.actions if a.kind != "delete"]
        full: set[str] = set()
        done, failed = self._run(deletes, by_name, full)
        done2, failed2 = self._run(rest, by_name, full)
        done += done2
        failed += failed2
        # creates the cloud refused for the limit count as refused (they were not blind: capacity said yes)
        limit_failed = [a for a, m in failed if m.startswith(REASON_ROUTE_LIMIT)]
        refused = plan.refused + limit_failed
        failed = [(a, m) for a, m in failed if not m.startswith(REASON_ROUTE_LIMIT)]
        self._update_view(done)
        warnings = list(plan.warnings)
        if limit_failed and not any(w.kind == "reached" for w in warnings):
            caps = {c.table: c for c in plan.tables}
            for t in sorted({a.table for a in limit_failed}):
                c = caps.get(t)
                if c:
                    msg = (f"{c.provider} route table {t}: the cloud refused new routes (limit {c.limit}). "
                           f"Ways out: {ways_out(c, c.limit + 1)}.")
                    warnings.append(LimitWarning("reached", t, c.limit, c.limit, msg,
                                                 sum(1 for a in limit_failed if a.table == t), c.provider,
                                                 c.quota_name, c.limit + 1))
        statuses = dict(plan.nodes)
        route_reasons = (REASON_ROUTE_PENDING, REASON_ROUTE_CREATED, REASON_ROUTE_LIMIT)
        for name in by_name:
            if name in plan.nodes and plan.nodes[name].reason not in route_reasons:
                continue  # a per-node problem found while planning
            keys = {k for k, (n, _) in plan.desired.items() if n == name}
            statuses[name] = self._node_status(name, keys, plan.keeps, done, refused, failed, warnings)
        programmed = len(plan.keeps) + sum(1 for a in done if a.kind in ("create", "replace"))
        tables = list(self._caps) if self._caps is not None else plan.tables
        return SyncResult(statuses, tables, warnings, done, failed, refused,
                          _calls_delta(before, self.driver.calls.snapshot()), programmed)


_valid = is_cidr
