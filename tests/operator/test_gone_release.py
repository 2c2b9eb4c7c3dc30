"""A gone Node's block is released only under the node's lock, never under a Node back meanwhile (issue 15).

Found by the model-based soak (tests/operator/test_model_races.py: seed 9012 failed 1 in 60 with one
block on two Nodes; traced on seed 9034 at 150 steps): a pass over every gone node
(`Controller._remove_gone`, run by a resync and by every deletion) took its list of gone names, then
waited for the cloud to delete their routes. Meanwhile the node's own deletion released its block, the
Node came back under the same name and its reconcile gave it (and wrote) a block, and then the pass
released THAT block too: the next node was given it as well (two live Nodes, one podCIDR). One podCIDR
write per node made this easy to hit (the write lands at once instead of after a refused patch and a
GET), but main had the same window.

The real Controller against the embedded API server and fake GCE; the only seam is a hold on the route
reconciler's `remove` (the real one still runs), so the interleaving is exact, not timing luck.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from routectl.cloud.reconcile import SyncResult
from routectl.sim.cluster import SimCluster, kubelet_node
from tests.operator.ctlharness import (
    Delivery,
    duplicate_blocks,
    new_controller,
    pod_cidrs_of,
    stop_controller,
)


class HeldRemoves:
    """Wraps the route reconciler's `remove`: the n-th call for `node` waits until `release(n)`."""

    def __init__(self, real: Callable[..., SyncResult], node: str) -> None:
        self.real = real
        self.node = node
        self.calls = 0
        self.gates = [threading.Event() for _ in range(4)]

    def __call__(self, name: str, pod_cidrs: Sequence[str] = (), **kw: Any) -> SyncResult:
        if name == self.node:
            n = self.calls
            self.calls += 1
            assert self.gates[n].wait(30), "a held route removal was never let go"
        return self.real(name, pod_cidrs, **kw)

    def release(self, n: int) -> None:
        self.gates[n].set()


async def until(cond: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), 30)


async def test_a_block_given_to_a_node_back_under_the_same_name_is_not_released_by_a_resync() -> None:
    sim = SimCluster(cloud="gce", nodes=1, pool_cidr="10.80.0.0/22", resync_seconds=3600,
                     run_controller=False).start()
    ctl = new_controller(sim)
    held: HeldRemoves | None = None
    try:
        feed = Delivery(sim)
        feed.list_all()
        await ctl.ensure_ready(feed.nodes, feed.pools)
        (name,) = feed.nodes
        await feed.deliver_node(ctl, name)
        feed.observe()
        await feed.deliver_node(ctl, name)
        assert ctl.routes is not None and pod_cidrs_of(sim.kube.get("v1", "Node", name))

        held = HeldRemoves(ctl.routes.remove, name)
        ctl.routes.remove = held  # type: ignore[method-assign]
        old = sim.kube.get("v1", "Node", name)
        zone = old["metadata"]["labels"]["topology.kubernetes.io/zone"]
        await asyncio.to_thread(sim.kube.delete, "v1", "Node", name)  # re-registers: a new object
        await asyncio.to_thread(sim.kube.create, kubelet_node(name, old["spec"]["providerID"], zone))
        feed.observe()

        gone = asyncio.create_task(feed.deliver_node(ctl, name))  # the old object's DELETED
        await until(lambda: held.calls == 1)  # ...its routes are being deleted
        resync = asyncio.create_task(ctl.resync())  # a pass over every gone node starts meanwhile
        await until(lambda: held.calls == 2 or ctl._node_locks.users(name) == 2)
        held.release(0)
        await gone  # the old object's block is released by its own deletion
        await feed.deliver_node(ctl, name)  # the new object: given a block, written
        given = pod_cidrs_of(sim.kube.get("v1", "Node", name))
        assert given
        held.release(1)
        await resync

        kept = ctl.allocator.allocation_of(name)
        assert kept is not None and tuple(kept.cidrs) == given, f"{name} carries {given}, allocator: {kept}"
        new = await asyncio.to_thread(sim.add_nodes, 1)
        feed.observe()
        await feed.deliver_node(ctl, new[0])
        assert pod_cidrs_of(sim.kube.get("v1", "Node", new[0]))
        assert not duplicate_blocks(sim.nodes())
    finally:
        if held is not None:
            for g in held.gates:
                g.set()
        await stop_controller(ctl)
        sim.stop()
