"""No two live Nodes ever hold the same podCIDR: the stale-view release race (issue 9).

The kopf index lags our own podCIDR writes; a pool edit makes the controller walk that index and
re-reconcile nodes that look empty there although we wrote them a block a moment ago. Before the fix
the stale view's empty podCIDRs *released* the block and the next waiting node got it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from routectl.constants import API_VERSION, POOL_KIND
from routectl.sim.cluster import SimCluster
from tests.operator.conftest import wait_for


def duplicates(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """podCIDRs held by more than one Node."""
    seen = Counter(c for n in nodes for c in (n.get("spec") or {}).get("podCIDRs") or
                   ([n["spec"]["podCIDR"]] if (n.get("spec") or {}).get("podCIDR") else []))
    return {c: k for c, k in seen.items() if k > 1}


def test_pool_edits_while_a_full_pool_allocates_never_duplicate_a_block(make_sim: Any) -> None:
    # a pool of two /24 blocks and six nodes registering at once
    sim = make_sim(cloud="gce", nodes=0, pool_cidr="10.80.0.0/23", resync_seconds=3600)
    wait_for(lambda: sim.controllers[0].is_leader, 60)
    seen: list[dict[str, int]] = []
    stop = threading.Event()

    def watch() -> None:  # the invariant is "ever", not only at the end
        while not stop.is_set():
            d = duplicates(sim.nodes())
            if d:
                seen.append(d)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    editing = threading.Event()

    def edit() -> None:  # spec edits (a harmless one) as fast as the API takes them
        pct = 50
        while not editing.is_set():
            pct = 50 + (pct + 1) % 40
            sim.kube.patch(API_VERSION, POOL_KIND, "default", {"spec": {"routeLimitWarningPercent": pct}})
            time.sleep(0.002)

    editor = threading.Thread(target=edit, daemon=True)
    try:
        editor.start()
        sim.add_nodes(6)
        wait_for(lambda: sum(1 for n in sim.nodes() if n["spec"].get("podCIDR")) >= 2, 30)
        time.sleep(1.0)
        # our own documented remedy: append a CIDR to the exhausted pool
        sim.kube.patch(API_VERSION, POOL_KIND, "default",
                       {"spec": {"cidrs": ["10.80.0.0/23", "10.81.0.0/22"]}})
        time.sleep(1.0)
        editing.set()
        editor.join(5)
        assert sim.wait_converged(60)
    finally:
        editing.set()
        stop.set()
        watcher.join(5)
    assert not seen, f"two live Nodes held the same podCIDR: {seen[:3]}"
    nodes = sim.nodes()
    assert len({n["spec"]["podCIDR"] for n in nodes}) == len(nodes) == 6
    # and the allocator agrees with the API
    ctl = sim.controllers[0].controller
    held = {a.node: a.cidrs for a in ctl.allocator.allocations()}
    assert held == {n["metadata"]["name"]: tuple(n["spec"]["podCIDRs"]) for n in nodes}


# ------------------------------------------------------------------ deterministic: the index lags our writes
async def test_a_stale_empty_view_never_releases_a_block_we_wrote() -> None:
    from tests.operator.ctlharness import (
        Delivery,
        duplicate_blocks,
        edit_pool,
        new_controller,
        stop_controller,
    )

    sim = SimCluster(cloud="gce", nodes=6, pool_cidr="10.80.0.0/23", resync_seconds=3600,
                     run_controller=False).start()
    ctl = new_controller(sim)
    try:
        feed = Delivery(sim)
        feed.list_all()  # kopf's first LIST: six nodes without podCIDRs, one pool of two blocks
        await asyncio.gather(*(feed.deliver_node(ctl, n) for n in sorted(feed.nodes)))
        nodes = sim.nodes()
        assert sum(1 for n in nodes if n["spec"].get("podCIDR")) == 2
        # the watch has not brought our two podCIDR writes back yet, and the pool is edited
        await asyncio.to_thread(edit_pool, sim, "default", {"routeLimitWarningPercent": 81})
        await feed.deliver_pool(ctl, "default")
        assert not duplicate_blocks(sim.nodes())
        await asyncio.to_thread(edit_pool, sim, "default", {"cidrs": ["10.80.0.0/23", "10.81.0.0/22"]})
        await feed.deliver_pool(ctl, "default")
        assert not duplicate_blocks(sim.nodes())
        feed.observe()
        while feed.pending_nodes():  # the watch catches up
            for name in feed.pending_nodes():
                await feed.deliver_node(ctl, name)
        nodes = sim.nodes()
        assert not duplicate_blocks(nodes)
        assert all(n["spec"].get("podCIDR") for n in nodes)
        held = {a.node: a.cidrs for a in ctl.allocator.allocations()}
        assert held == {n["metadata"]["name"]: tuple(n["spec"]["podCIDRs"]) for n in nodes}
    finally:
        await stop_controller(ctl)
        sim.stop()


async def test_a_restarted_controller_occupies_every_existing_podcidr_before_serving_a_new_node() -> None:
    from tests.operator.ctlharness import Delivery, duplicate_blocks, new_controller, stop_controller

    sim = SimCluster(cloud="gce", nodes=3, pool_cidr="10.80.0.0/22", resync_seconds=3600,
                     run_controller=False).start()
    first = new_controller(sim, "before-restart")
    try:
        feed = Delivery(sim)
        feed.list_all()
        for name in feed.pending_nodes():
            await feed.deliver_node(first, name)
    finally:
        await stop_controller(first)
    assert len({n["spec"]["podCIDR"] for n in sim.nodes()}) == 3
    sim.add_nodes(1)
    ctl = new_controller(sim, "after-restart")
    try:
        feed = Delivery(sim)
        feed.list_all()  # the new node's event happens to be handled first
        await feed.deliver_node(ctl, "node-0004")
        nodes = sim.nodes()
        assert not duplicate_blocks(nodes)
        assert sim.kube.get("v1", "Node", "node-0004")["spec"]["podCIDR"] == "10.80.3.0/24"
    finally:
        await stop_controller(ctl)
        sim.stop()
