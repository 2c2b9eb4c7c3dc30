"""No two live Nodes ever hold the same podCIDR: the stale-view release race (issue 9).

The kopf index lags our own podCIDR writes; a pool edit makes the controller walk that index and
re-reconcile nodes that look empty there although we wrote them a block a moment ago. Before the fix
the stale view's empty podCIDRs *released* the block and the next waiting node got it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest

from routectl.constants import API_VERSION, POOL_KIND
from routectl.sim.cluster import SimCluster
from tests.operator.conftest import wait_for


def duplicates(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """podCIDRs held by more than one Node."""
    seen = Counter(c for n in nodes for c in (n.get("spec") or {}).get("podCIDRs") or
                   ([n["spec"]["podCIDR"]] if (n.get("spec") or {}).get("podCIDR") else []))
    return {c: k for c, k in seen.items() if k > 1}


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


def test_with_node_watch_events_delayed_pool_edits_never_duplicate_a_block(
        make_sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The real kopf operator, its watch of Nodes lagging by up to 0.6 s per object (seeded), while a full
    pool allocates and is edited: the stale index must not hand a written block out again (and the
    last-line claim check before each write must never have had to refuse one)."""
    caplog.set_level(logging.ERROR, logger="routectl.controller.assigner")
    seed = 4242
    sim = make_sim(cloud="gce", nodes=0, pool_cidr="10.80.0.0/23", resync_seconds=3600)
    wait_for(lambda: sim.controllers[0].is_leader, 60)
    delay = sim.kube.delay_watch("nodes", 0.6, seed=seed, min_delay=0.05)
    seen: list[dict[str, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            d = duplicates(sim.nodes())
            if d:
                seen.append(d)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        names = sim.add_nodes(6)
        for pct in range(60, 72):  # spec edits while the pool (2 blocks) is full and nodes wait
            sim.kube.patch(API_VERSION, POOL_KIND, "default", {"spec": {"routeLimitWarningPercent": pct}})
            for name in names:  # kubelet status updates: versions older than our podCIDR write arrive late
                sim.kube.patch_status("v1", "Node", name, {"status": {"nodeInfo": {"bootID": f"b{pct}"}}})
            time.sleep(0.1)
        sim.kube.patch(API_VERSION, POOL_KIND, "default",
                       {"spec": {"cidrs": ["10.80.0.0/23", "10.81.0.0/22"]}})
        for pct in range(72, 78):
            sim.kube.patch(API_VERSION, POOL_KIND, "default", {"spec": {"routeLimitWarningPercent": pct}})
            time.sleep(0.1)
        delay.stop()
        sim.kube.release_watches()
        assert sim.wait_converged(60)
    finally:
        stop.set()
        watcher.join(5)
    assert not seen, f"seed {seed}: two live Nodes held the same podCIDR: {seen[:3]}"
    assert len({n["spec"]["podCIDR"] for n in sim.nodes()}) == 6
    bugs = [r.getMessage() for r in caplog.records if "BUG" in r.getMessage()]
    assert not bugs, f"seed {seed}: the allocator offered a block someone holds: {bugs[:3]}"
