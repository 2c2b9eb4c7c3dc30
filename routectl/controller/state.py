"""Pure views and decisions of the controller: what a Node/Pool body says, which condition and pool status
to write, and whether a write is needed at all. No I/O here, so the handlers stay thin and this is
unit-testable on plain dicts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from routectl.constants import (
    CONDITION_NETWORK_UNAVAILABLE,
    POOL_EXHAUSTED,
    POOL_INVALID,
    POOL_READY,
    POOL_ROUTE_LIMIT_NEARING,
    POOL_ROUTE_LIMIT_REACHED,
    POOL_ROUTES_OVERFLOWING,
    REASON_NO_ROUTE_CREATED,
    REASON_ROUTE_CREATED,
    TRANSPORT_ANNOTATION,
)
from routectl.routes.fallback import overflow_message, switch_already_on
from routectl.routes.model import node_pod_cidrs

# The keys of the NetworkUnavailable condition a view keeps (what condition_is_current compares): the
# timestamps change on every kubelet heartbeat and are never read.
_CONDITION_KEYS = ("type", "status", "reason", "message")


@dataclass(frozen=True, slots=True)
class NodeView:
    """The parts of a Node the controller acts on, read from its body (one per Node, kept for the life of
    the Node: compact, sharing label texts between nodes, holding nothing else of the body)."""

    name: str
    uid: str
    provider_id: str | None
    labels: Mapping[str, str]
    pod_cidrs: tuple[str, ...]
    resource_version: str
    deleting: bool
    condition: Mapping[str, Any] | None  # the current NetworkUnavailable condition, if any
    transport: str | None = None  # the routectl.io/transport annotation ("overlay"), if any
    created: str = ""  # metadata.creationTimestamp: route room goes to older nodes first

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NodeView:
        """Build from a Node object as the API serves it."""
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        cidrs = node_pod_cidrs(body)
        cond = None
        for c in (body.get("status") or {}).get("conditions") or []:
            if c.get("type") == CONDITION_NETWORK_UNAVAILABLE:
                cond = {k: _shared(c[k]) for k in _CONDITION_KEYS if k in c}  # the same few texts
        return cls(
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            provider_id=spec.get("providerID") or None,
            # label keys and most values are the same on every node: one copy of each text for all
            labels={_shared(k): _shared(v) for k, v in (meta.get("labels") or {}).items()},
            pod_cidrs=cidrs,
            resource_version=str(meta.get("resourceVersion", "")),
            deleting=bool(meta.get("deletionTimestamp")),
            condition=cond,
            transport=(meta.get("annotations") or {}).get(TRANSPORT_ANNOTATION),
            created=str(meta.get("creationTimestamp") or ""),
        )


def _shared(text: Any) -> Any:
    """`sys.intern` for str (a label text), anything else unchanged."""
    return sys.intern(text) if type(text) is str else text


@dataclass(frozen=True)
class PoolView:
    """A PodCIDRPool body as last seen (kept whole: the IPAM parser reads it)."""

    name: str
    body: Mapping[str, Any]
    generation: int
    deleting: bool
    resource_version: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PoolView:
        """Build from a PodCIDRPool object."""
        meta = body.get("metadata") or {}
        return cls(name=meta.get("name", ""), body=dict(body), generation=int(meta.get("generation") or 0),
                   deleting=bool(meta.get("deletionTimestamp")),
                   resource_version=str(meta.get("resourceVersion", "")))


class IndexViews:
    """The controller's view of the cluster: kopf's indexes of Nodes and PodCIDRPools (each key's store
    holds one view, the newest). Empty until the first handler call hands the indexes over."""

    def __init__(self) -> None:
        self.node_index: Mapping[str, Any] | None = None
        self.pool_index: Mapping[str, Any] | None = None
        # live name -> view mappings (routectl's own informers): read in O(1), never copied
        self.node_map: Mapping[str, NodeView] | None = None
        self.pool_map: Mapping[str, PoolView] | None = None

    @staticmethod
    def _views(index: Mapping[str, Any] | None) -> list[Any]:
        out = []
        for store in list((index or {}).values()):
            for value in store:
                out.append(value)
                break
        return out

    def node_views(self) -> Mapping[str, NodeView]:
        """Every Node currently known: the live NodeCache when there is one (O(1)), else a copy of the
        kopf index."""
        if self.node_map is not None:
            return self.node_map
        return {v.name: v for v in self._views(self.node_index)}

    def pool_views(self) -> dict[str, PoolView]:
        """Every PodCIDRPool currently known (a copy: a handful)."""
        if self.pool_map is not None:
            return dict(self.pool_map)
        return {v.name: v for v in self._views(self.pool_index)}


@dataclass(frozen=True)
class NetworkState:
    """What the NetworkUnavailable condition of a node should say."""

    ok: bool
    reason: str
    message: str


def route_state(ok: bool, problem_reason: str = "", problem_message: str = "") -> NetworkState:
    """Condition for a node whose routes all exist (ok) or not (with the per-node reason why)."""
    if ok:
        return NetworkState(True, REASON_ROUTE_CREATED, "RouteController created a route")
    detail = f"{problem_reason}: {problem_message}" if problem_reason else problem_message
    return NetworkState(False, REASON_NO_ROUTE_CREATED, detail or "routes not programmed yet")


def condition_is_current(current: Mapping[str, Any] | None, want: NetworkState) -> bool:
    """True when the node already carries exactly this condition (then no write is needed)."""
    if current is None:
        return False
    return (current.get("status") == ("False" if want.ok else "True")
            and current.get("reason") == want.reason
            and current.get("message") == want.message)


# ---------------------------------------------------------------------------------------- pool status
@dataclass
class PoolFacts:
    """Everything the controller knows about one pool, from which its status is derived."""

    name: str
    generation: int
    allocated: int = 0
    capacity: int = 0
    free: int = 0
    routes_programmed: int = 0
    invalid: str | None = None          # message of the validation problem, None when valid
    exhausted: str | None = None        # message when a node could not get a block
    holders: tuple[str, ...] = ()       # nodes holding blocks (listed in status while the pool is deleted)
    holder_cidrs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deleting: bool = False
    tables: Sequence[Mapping[str, Any]] = ()           # [{id, used, limit}]
    nearing: str | None = None          # route limit nearing message
    reached: str | None = None          # route limit reached message (with the quota/overlay advice)
    transports: tuple[int, int] | None = None  # (routed, overlay) nodes, for pools with overlay fallback


def _cond(ctype: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": ctype, "status": "True" if status else "False", "reason": reason, "message": message}


def pool_conditions(f: PoolFacts) -> list[dict[str, Any]]:
    """The pool's conditions (without timestamps): Ready, Exhausted, RouteLimitNearing/Reached, Invalid,
    and for pools with routeLimitFallback: Overlay also RoutesOverflowing (nodes riding the overlay).

    With the fallback on, a full route table is no reason for Ready=False while every node has a path
    (a route or the overlay), and no message advises turning on the switch that is on.
    """
    reached, nearing = f.reached, f.nearing
    all_have_a_path = False
    if f.transports is not None:
        reached = switch_already_on(reached) if reached else reached
        nearing = switch_already_on(nearing) if nearing else nearing
        all_have_a_path = sum(f.transports) >= len(f.holders)
    if f.invalid:
        ready = _cond(POOL_READY, False, "Invalid", f.invalid)
    elif f.deleting and f.holders:
        held = ", ".join(f.holders[:20])
        ready = _cond(POOL_READY, False, "InUse",
                      f"deletion waits for {len(f.holders)} node(s) holding blocks: {held}")
    elif f.exhausted:
        ready = _cond(POOL_READY, False, "Exhausted", f.exhausted)
    elif reached and not all_have_a_path:
        ready = _cond(POOL_READY, False, "RouteLimitReached", reached)
    else:
        paths = "" if f.transports is None else (
            f"; every node has a path ({f.transports[0]} routed, {f.transports[1]} on the VXLAN overlay)")
        ready = _cond(POOL_READY, True, "Ready", f"{f.allocated} of {f.capacity} blocks allocated{paths}")
    conditions = [
        ready,
        _cond(POOL_EXHAUSTED, bool(f.exhausted), "NoFreeBlocks" if f.exhausted else "BlocksAvailable",
              f.exhausted or f"{f.free} blocks free"),
        _cond(POOL_ROUTE_LIMIT_NEARING, bool(nearing), "RouteLimitNearing" if nearing else "Headroom",
              nearing or "route tables have headroom"),
        _cond(POOL_ROUTE_LIMIT_REACHED, bool(reached), "RouteLimitReached" if reached else "Headroom",
              reached or "every route fits"),
        _cond(POOL_INVALID, bool(f.invalid), "Invalid" if f.invalid else "Valid",
              f.invalid or "spec is valid"),
    ]
    if f.transports is not None:
        routed, overlay = f.transports
        conditions.append(_cond(POOL_ROUTES_OVERFLOWING, overlay > 0,
                                "RouteLimitReached" if overlay else "AllRouted",
                                overflow_message(routed, overlay, reached) if overlay
                                else "no node rides the VXLAN overlay"))
    return conditions


def pool_status(f: PoolFacts, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """Full status for a pool; a condition keeps its lastTransitionTime while its status is unchanged."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    conditions = []
    for c in pool_conditions(f):
        old = before.get(c["type"])
        c["lastTransitionTime"] = old.get("lastTransitionTime", now) if old and old.get("status") == \
            c["status"] else now
        conditions.append(c)
    status: dict[str, Any] = {
        "observedGeneration": f.generation,
        "allocated": f.allocated,
        "capacity": f.capacity,
        "free": f.free,
        "routesProgrammed": f.routes_programmed,
        "routeTables": [dict(t) for t in f.tables],
        "conditions": conditions,
    }
    if f.transports is not None:
        status["routedNodes"], status["overlayNodes"] = f.transports
    if f.deleting and f.holders:  # say which nodes keep the pool alive
        status["nodes"] = [{"name": n, "cidrs": list(f.holder_cidrs.get(n, ()))} for n in f.holders]
    elif previous and previous.get("nodes"):
        status["nodes"] = None  # merge patch: drop the list once it no longer applies
    return status


def status_differs(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when writing `new` would change the pool's status (timestamps aside)."""
    if not current:
        return True

    def strip(s: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in s.items() if k in new}
        out["conditions"] = sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in s.get("conditions") or []),
            key=lambda c: str(c.get("type")))
        return out

    return strip(current) != strip(new)



def merge_warnings(current: Sequence[Any], new: Sequence[Any], full: bool) -> list[Any]:
    """Route-limit warnings after a route result: a full sync replaces them all; a partial result
    (one batch, one removal) replaces only the (kind, table) pairs it reports and keeps the rest."""
    if full:
        return list(new)
    if not new:
        return list(current)
    seen = {(w.kind, w.table) for w in new}
    return [w for w in current if (w.kind, w.table) not in seen] + list(new)


def stale_placeholder_changes(failed: set[str], held: set[str]) -> tuple[set[str], set[str]]:
    """Blocks whose stale route could not be deleted stay occupied by a placeholder: which destinations
    need a placeholder now, and which placeholders can go (their route was deleted at last)."""
    return failed - held, held - failed
