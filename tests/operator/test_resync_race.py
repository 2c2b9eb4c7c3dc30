"""A full route sync never deletes the route of a node we just assigned and routed (issue 10 follow-up).

The Node cache lags our own podCIDR writes: a node we gave a block and routed through the event path a
moment ago still looks empty there. A resync whose node list came from the cache alone thought that node
wanted no route and deleted it (re-created later: a window without a route for running pods).
"""

from __future__ import annotations

import asyncio

from routectl.sim.cluster import SimCluster


async def test_a_resync_keeps_the_routes_of_nodes_written_but_not_seen_yet() -> None:
    from tests.operator.ctlharness import Delivery, new_controller, stop_controller

    sim = SimCluster(cloud="gce", nodes=4, pool_cidr="10.80.0.0/22", resync_seconds=3600,
                     run_controller=False).start()
    ctl = new_controller(sim)
    try:
        feed = Delivery(sim)
        feed.list_all()  # four nodes without podCIDRs
        await asyncio.gather(*(feed.deliver_node(ctl, n) for n in sorted(feed.nodes)))
        written = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in sim.nodes()}
        assert all(written.values())
        routed = set(sim.cloud_routes())
        assert set(written.values()) <= routed  # ensure() routed them on the event path
        sim.gce.reset_log()
        # the watch has not brought our podCIDR writes back: the cache still shows four empty nodes
        await ctl.resync()
        assert sim.gce.calls("compute.routes.delete") == 0
        assert set(written.values()) <= set(sim.cloud_routes())
    finally:
        await stop_controller(ctl)
        sim.stop()


async def test_a_node_that_arrived_to_a_full_pool_is_served_when_a_block_is_released() -> None:
    # The waiting set: a node refused for a full pool AFTER start-up is served by the release itself
    # (no resync runs here), without the controller scanning every node for one without a podCIDR.
    from tests.operator.ctlharness import Delivery, new_controller, stop_controller

    sim = SimCluster(cloud="gce", nodes=2, pool_cidr="10.80.0.0/23", resync_seconds=3600,
                     run_controller=False).start()
    ctl = new_controller(sim)
    try:
        feed = Delivery(sim)
        feed.list_all()
        await asyncio.gather(*(feed.deliver_node(ctl, n) for n in sorted(feed.nodes)))
        (late,) = await asyncio.to_thread(sim.add_nodes, 1, "late")
        feed.observe()
        await feed.deliver_node(ctl, late)
        assert not ctl.assigner.cidrs_of(feed.nodes[late][0])  # two blocks, both held
        first = sorted(n for n in feed.nodes if n != late)[0]
        await asyncio.to_thread(sim.delete_node, first)
        feed.observe()
        while feed.queue.get(first):  # our podCIDR write, then DELETED: routes deleted, block released
            await feed.deliver_node(ctl, first)
        body = next(n for n in sim.nodes() if n["metadata"]["name"] == late)
        assert body["spec"].get("podCIDR"), "the waiting node was not served by the release"
    finally:
        await stop_controller(ctl)
        sim.stop()
