"""The podCIDR write (issue 15): one PATCH per node even while the kubelet updates its status, guarded by
the Node's uid, never over someone else's podCIDR (theirs is the truth), and a block freed only on a
definite "the API refused it".

The real Controller (its Assigner) against the embedded API server and fake GCE; watch delivery is played
by tests/operator/ctlharness.Delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from routectl.constants import EVENT_CIDR_NOT_AVAILABLE
from routectl.controller.reconcile import Controller
from routectl.sim.cluster import SimCluster, kubelet_node
from tests.operator.ctlharness import Delivery, new_controller, stop_controller

AGENT = "routectl-test"


def kubelet_heartbeat(sim: SimCluster, name: str, beat: int) -> None:
    """What a kubelet does to a new Node right after registering: a status update (resourceVersion moves)."""
    sim.kube.patch_status("v1", "Node", name, {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": f"beat {beat}"}]}},
        content_type="application/strategic-merge-patch+json")


def podcidr_patches(sim: SimCluster, since: int) -> list[Any]:
    """The controller's PATCHes of Node main resources (its podCIDR writes)."""
    return sim.kube.requests.select(verb="patch", resource="nodes", subresource=None, since=since,
                                    user_agent=AGENT)


@pytest.fixture
async def started() -> AsyncIterator[tuple[SimCluster, Controller, Delivery]]:
    sim = SimCluster(cloud="gce", nodes=0, pool_cidr="10.80.0.0/22", resync_seconds=3600,
                     run_controller=False).start()
    ctl = new_controller(sim)
    feed = Delivery(sim)
    feed.list_all()
    await ctl.ensure_ready(feed.nodes, feed.pools)
    await asyncio.to_thread(sim.add_nodes, 4)  # nodes that arrive after start (waiting ones are served by it)
    feed.list_all()
    try:
        yield sim, ctl, feed
    finally:
        await stop_controller(ctl)
        sim.stop()


async def test_a_kubelet_status_update_before_our_write_costs_no_conflict_and_no_retry(
        started: tuple[SimCluster, Controller, Delivery]) -> None:
    sim, ctl, feed = started
    mark = sim.kube.requests.mark()
    for i, name in enumerate(sorted(feed.nodes)):
        view = feed.nodes[name][0]  # read before the kubelet's update: its resourceVersion is stale now
        await asyncio.to_thread(kubelet_heartbeat, sim, name, i)
        await ctl.reconcile_node(view)
    patches = podcidr_patches(sim, mark)
    assert [r.status for r in patches] == [200] * len(feed.nodes)  # one write per node, none refused
    assert not sim.kube.requests.select(verb="get", resource="nodes", since=mark, user_agent=AGENT)
    nodes = sim.nodes()
    assert all(n["spec"].get("podCIDR") for n in nodes)
    assert all(c["message"].startswith("beat") for n in nodes for c in n["status"]["conditions"]
               if c["type"] == "Ready")  # the kubelet's status survived


async def test_the_write_never_lands_on_a_node_recreated_under_the_same_name(
        started: tuple[SimCluster, Controller, Delivery]) -> None:
    sim, ctl, feed = started
    name = sorted(feed.nodes)[0]
    old = feed.nodes[name][0]
    body = sim.kube.get("v1", "Node", name)
    zone = body["metadata"]["labels"]["topology.kubernetes.io/zone"]
    await asyncio.to_thread(sim.kube.delete, "v1", "Node", name)
    await asyncio.to_thread(sim.kube.create, kubelet_node(name, old.provider_id, zone))
    assert await ctl.assigner.assign(old) is None
    new = sim.kube.get("v1", "Node", name)
    assert new["metadata"]["uid"] != old.uid
    assert not new["spec"].get("podCIDR")  # the old object's block is not on the new object
    assert not ctl.book.written  # and nothing is remembered as written


async def test_someone_elses_podcidr_set_meanwhile_is_the_truth(
        started: tuple[SimCluster, Controller, Delivery]) -> None:
    sim, ctl, feed = started
    name = sorted(feed.nodes)[0]
    view = feed.nodes[name][0]
    theirs = "10.80.3.0/24"
    await asyncio.to_thread(sim.kube.patch, "v1", "Node", name,
                            {"spec": {"podCIDR": theirs, "podCIDRs": [theirs]}})
    result = await ctl.assigner.assign(view)
    assert result is not None and result[1] == (theirs,)
    assert sim.kube.get("v1", "Node", name)["spec"]["podCIDRs"] == [theirs]  # never overwritten
    held = ctl.allocator.allocation_of(name)
    assert held is not None and held.cidrs == (theirs,)
    # the block we had picked for it is free again: the next node gets it, and no block is held twice
    other = sorted(feed.nodes)[1]
    got = await ctl.assigner.assign(feed.nodes[other][0])
    assert got is not None and got[1] != (theirs,)


async def test_a_refusal_of_the_value_itself_frees_the_block_and_says_so(
        started: tuple[SimCluster, Controller, Delivery]) -> None:
    sim, ctl, feed = started
    name = sorted(feed.nodes)[0]
    sim.kube.inject_fault(verb="patch", resource="nodes", subresource=None, code=422, reason="Invalid",
                          message="spec.podCIDRs: Invalid value", times=1)
    assert await ctl.assigner.assign(feed.nodes[name][0]) is None
    assert ctl.allocator.allocation_of(name) is None  # 422 and still no podCIDR on it: a definite "no"
    assert not sim.kube.get("v1", "Node", name)["spec"].get("podCIDR")
    await ctl.events.flush()
    assert any(e["reason"] == EVENT_CIDR_NOT_AVAILABLE and e["involvedObject"]["name"] == name
               for e in sim.kube.list("v1", "Event", "default"))


async def test_a_failed_write_that_may_have_landed_keeps_the_block(
        started: tuple[SimCluster, Controller, Delivery]) -> None:
    sim, ctl, feed = started
    name = sorted(feed.nodes)[0]
    # the write is answered 500 and the read-back fails too: unknown whether it landed
    sim.kube.inject_fault(verb="patch", resource="nodes", subresource=None, code=500, times=5)
    sim.kube.inject_fault(verb="get", resource="nodes", subresource=None, code=500, times=5)
    assert await ctl.assigner.assign(feed.nodes[name][0]) is None
    assert ctl.allocator.allocation_of(name) is not None  # kept: a block freed on a guess is given twice
