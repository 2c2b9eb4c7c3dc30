"""Allocation: give a Node its block and write it, record podCIDRs set by anyone, report conflicts.

The rule of what an observation may change lives in routectl.controller.allocation (pure); this module
sequences it with the podCIDR write (guarded by the Node's uid; the API refuses changing a podCIDR) under the
controller's allocation lock, and keeps the per-node findings (overlaps, outside every pool...).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from routectl.constants import EVENT_CIDR_ASSIGNED, EVENT_CIDR_CONFLICT, EVENT_CIDR_NOT_AVAILABLE
from routectl.controller import kube
from routectl.controller.allocation import AllocationBook, canon
from routectl.controller.kube import ApiError, KubeClient
from routectl.controller.metrics import Metrics
from routectl.controller.reporting import Reporter
from routectl.controller.state import NodeView
from routectl.ipam.allocator import Finding, NodeCIDRs
from routectl.ipam.errors import CIDRExhaustedError, NoMatchingPoolError

log = logging.getLogger(__name__)


class Assigner:
    """Assign, occupy and (for the coordinator) release blocks; one instance per controller."""

    def __init__(self, client: KubeClient, book: AllocationBook, lock: asyncio.Lock, reporter: Reporter,
                 metrics: Metrics, fenced: Callable[[], bool]) -> None:
        self.client = client
        self.book = book
        self.lock = lock  # serialises every allocator mutation
        self.reporter = reporter
        self.metrics = metrics
        self.fenced = fenced
        self.findings: dict[str, list[Finding]] = {}

    # ---------------------------------------------------------------------------------- start-up
    async def rebuild(self, nodes: Mapping[str, NodeView]) -> None:
        """Occupy every existing podCIDR (the complete view) before any block is handed out."""
        async with self.lock:
            findings = self.book.rebuild(
                NodeCIDRs(v.name, v.pod_cidrs, v.labels) for v in nodes.values() if v.pod_cidrs)
        self._record_findings(nodes, findings)
        for f in findings:
            if f.node in nodes:
                await self.reporter.event_node(nodes[f.node], "Warning", EVENT_CIDR_CONFLICT, f.message)

    def _record_findings(self, names: Iterable[str], findings: Iterable[Finding]) -> None:
        by_node: dict[str, list[Finding]] = {n: [] for n in names}
        for f in findings:
            by_node.setdefault(f.node, []).append(f)
        self.findings = {n: fs for n, fs in by_node.items() if fs}

    # ------------------------------------------------------------------------------------ queries
    def cidrs_of(self, view: NodeView) -> tuple[str, ...]:
        """The node's podCIDRs: as shown, or as we wrote them when the view does not show them yet."""
        return self.book.cidrs_of(view.name, view.pod_cidrs, view.uid)

    def problem(self, node: str) -> str | None:
        """Why a node's podCIDR must not be routed (overlap, outside every pool...), or None."""
        fs = self.findings.get(node)
        return "; ".join(f.message for f in fs) if fs else None

    # ---------------------------------------------------------------------------------- occupancy
    async def occupy(self, view: NodeView) -> None:
        """Record a podCIDR set by anyone (us before a restart, or another tool); report conflicts."""
        async with self.lock:
            findings = self.book.observe(view.name, view.pod_cidrs, view.resource_version)
        if findings is None:
            return  # nothing new (or older than what we wrote)
        self.reporter.not_waiting(view.name)
        self.findings[view.name] = findings
        for f in findings:
            await self.reporter.event_node(view, "Warning", EVENT_CIDR_CONFLICT, f.message)
        self.reporter.touch()

    async def release(self, node: str) -> None:
        """Free a node's blocks and forget it: only for a Node that is gone (its routes deleted)."""
        async with self.lock:
            released = self.book.release(node)
        self.findings.pop(node, None)
        if released is not None:
            self.metrics.releases.labels(released.pool or "-").inc()

    async def _drop(self, node: str) -> None:
        async with self.lock:
            self.book.release(node)

    # --------------------------------------------------------------------------------- assignment
    async def assign(self, view: NodeView) -> tuple[NodeView, tuple[str, ...]] | None:
        """Allocate a block and write it (kube.set_node_pod_cidrs: on this Node object, never over another).

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
                pool = self.book.allocator.select_pool(view.labels)
                if pool is not None:
                    self.reporter.mark_waiting(pool.name, view.name, str(exc))
        if refusal is not None:
            await self.reporter.event_node(view, refusal[0], EVENT_CIDR_NOT_AVAILABLE, refusal[1])
            return None
        for _attempt in range(8):
            async with self.lock:
                if self.fenced():  # lost the Lease while allocating: another replica may hand this block out
                    self.book.release(view.name)
                    return None
                bug = self.book.claim_problem(alloc)
            if bug is not None:
                log.error("BUG: refusing to write podCIDR of node %s: %s (please report)", view.name, bug)
                self.metrics.node_writes.labels("refused-claim").inc()
                return None
            try:
                body = await kube.set_node_pod_cidrs(self.client, view.name, view.uid, alloc.cidrs)
            except ApiError as exc:
                if exc.status == 404:
                    await self._drop(view.name)
                    return None
                try:
                    body = await self.client.get(f"/api/v1/nodes/{view.name}")
                except ApiError as exc2:
                    if exc2.status == 404:
                        await self._drop(view.name)
                    else:  # unknown whether the write landed: keep the block, a later pass retries
                        log.warning("writing podCIDR of node %s failed (block kept): %s", view.name, exc)
                    return None
                fresh = NodeView.from_body(body)
                if view.uid and fresh.uid != view.uid:
                    # deleted and re-created under the same name: not the object we assign for. Its own
                    # events serve the new one; writing here would tie the block to the old object,
                    # whose deletion then frees it under the new one's feet.
                    return None
                if fresh.pod_cidrs:  # set meanwhile (by us, the write landed, or by someone else)
                    if canon(fresh.pod_cidrs) == canon(alloc.cidrs):
                        break
                    await self.occupy(fresh)  # theirs is the truth
                    return fresh, fresh.pod_cidrs
                if exc.status == 422:
                    # the same object, still without a podCIDR: not a lost race (that would show
                    # theirs), the API refused the value itself; a definite answer, the write did not land
                    await self._drop(view.name)
                    log.warning("the API refused podCIDR %s for node %s: %s", alloc.cidrs, view.name, exc)
                    await self.reporter.event_node(
                        view, "Warning", EVENT_CIDR_NOT_AVAILABLE,
                        f"the API refused podCIDR {', '.join(alloc.cidrs)}: {exc.message}")
                    self.reporter.touch()
                    return None
                if not exc.conflict:
                    log.warning("writing podCIDR of node %s failed, retrying: %s", view.name, exc)
                    await asyncio.sleep(0.2)
                continue
            break
        else:
            return None  # still not written: the block stays held, a later pass retries
        self.metrics.node_writes.labels("podCIDR").inc()
        self.reporter.not_waiting(view.name)
        async with self.lock:
            meta = body.get("metadata") or {}
            self.book.wrote(view.name, alloc.cidrs, str(meta.get("resourceVersion", "")),
                            str(meta.get("uid", "")))
        self.metrics.allocations.labels(alloc.pool or "-").inc()
        self.reporter.touch()
        new_view = NodeView.from_body(body)
        await self.reporter.event_node(new_view, "Normal", EVENT_CIDR_ASSIGNED,
                                       f"assigned {', '.join(alloc.cidrs)} from pool {alloc.pool}")
        return new_view, alloc.cidrs
