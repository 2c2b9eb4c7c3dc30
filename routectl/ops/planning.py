"""Pure inputs of a read-only route plan: which cluster CIDRs the pools define, which nodes have routes to
want, and which block the IPAM would give the nodes still waiting for one. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routectl.ipam.allocator import Allocator, NodeCIDRs
from routectl.ipam.errors import IPAMError
from routectl.ipam.model import PoolSpec, route_scope
from routectl.ops.report import canon, name_of, pod_cidrs
from routectl.routes.model import NodeRoutes

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class PoolSet:
    """The pools as the controller would configure them: parsed specs, their problems, the cluster CIDRs."""

    specs: tuple[PoolSpec, ...]
    problems: dict[str, list[str]]
    cluster_cidrs: tuple[str, ...]
    warn_percent: int


def pool_set(pools: Iterable[Obj]) -> PoolSet:
    """Parse pool objects like the controller does (unparsable pools are problems, not errors)."""
    specs: list[PoolSpec] = []
    problems: dict[str, list[str]] = {}
    for p in pools:
        try:
            specs.append(PoolSpec.from_resource(p))
        except IPAMError as exc:
            problems[name_of(p)] = [str(exc)]
    cidrs, warn = route_scope(specs)
    return PoolSet(tuple(specs), problems, cidrs, warn)



def node_routes(nodes: Iterable[Obj]) -> list[NodeRoutes]:
    """NodeRoutes for every node that has podCIDRs (what the controller asks the reconciler for)."""
    out = []
    for n in nodes:
        cidrs = pod_cidrs(n)
        if not cidrs:
            continue
        meta = n.get("metadata") or {}
        out.append(NodeRoutes(name_of(n), str(meta.get("uid", "")),
                              (n.get("spec") or {}).get("providerID") or None,
                              tuple(canon(c) for c in cidrs)))
    return out


@dataclass(frozen=True)
class Waiting:
    """A node without a podCIDR: the pool and block(s) a fresh IPAM would give it, or why it cannot."""

    node: str
    pool: str | None
    pod_cidrs: tuple[str, ...]
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node": self.node, "pool": self.pool, "podCIDRs": list(self.pod_cidrs),
                "problem": self.problem}


def predict_allocations(pools: PoolSet, nodes: Sequence[Obj]) -> tuple[list[Waiting], dict[str, Any]]:
    """Rebuild an allocator from the nodes' podCIDRs (a private copy: nothing is written anywhere), then
    allocate for each waiting node in name order. Also returns recomputed usage per pool.

    The running controller's round-robin cursor may pick other blocks than this fresh copy; the count
    and the pool are what matter for capacity.
    """
    alloc = Allocator()
    problems = {k: v for k, v in alloc.set_pools(pools.specs).items() if v}
    findings = alloc.rebuild(NodeCIDRs(name_of(n), tuple(pod_cidrs(n)),
                                       dict((n.get("metadata") or {}).get("labels") or {}))
                             for n in nodes if pod_cidrs(n))
    waiting: list[Waiting] = []
    for n in sorted((n for n in nodes if not pod_cidrs(n)), key=name_of):
        labels = dict((n.get("metadata") or {}).get("labels") or {})
        try:
            a = alloc.allocate(name_of(n), labels)
            waiting.append(Waiting(name_of(n), a.pool, a.cidrs, None))
        except IPAMError as exc:
            pool = alloc.select_pool(labels)
            waiting.append(Waiting(name_of(n), pool.name if pool else None, (), str(exc)))
    usage: dict[str, Any] = {}
    for spec in pools.specs:
        try:
            u = alloc.usage(spec.name)
        except KeyError:
            continue
        held = u.allocated - sum(1 for w in waiting if w.pool == spec.name and w.pod_cidrs)
        usage[spec.name] = {"allocated": held, "capacity": u.capacity,
                            "free": u.free + sum(1 for w in waiting if w.pool == spec.name and w.pod_cidrs)}
    extra = {"problems": {**pools.problems, **problems},
             "findings": [{"node": f.node, "cidr": f.cidr, "kind": f.kind, "message": f.message}
                          for f in findings]}
    return waiting, {"usage": usage, **extra}
