"""Events never hold a podCIDR or a condition write up, and are the first thing dropped (issue 15).

The real Controller (its Reporter and EventRecorder) against the embedded API server and fake GCE; watch
delivery is played by tests/operator/ctlharness.Delivery.
"""

from __future__ import annotations

import asyncio

from routectl.controller.kube import EventRecorder, KubeClient
from routectl.sim.cluster import SimCluster
from tests.operator.ctlharness import Delivery, new_controller, stop_controller


async def test_events_never_delay_the_podcidr_or_the_condition_and_are_dropped_first() -> None:
    sim = SimCluster(cloud="gce", nodes=0, pool_cidr="10.80.0.0/20", resync_seconds=3600,
                     run_controller=False).start()
    ctl = new_controller(sim)
    ctl.events.queue_size, ctl.events.senders = 2, 3
    try:
        feed = Delivery(sim)
        feed.list_all()
        await ctl.ensure_ready(feed.nodes, feed.pools)
        await asyncio.to_thread(sim.add_nodes, 10)  # nodes arriving after start
        feed.list_all()
        # every Event POST hangs (an overloaded API server): not one may hold a node's writes up
        sim.kube.inject_fault(verb="create", resource="events", code=503, times=None, delay=120.0)
        mark = sim.kube.requests.mark()
        await asyncio.wait_for(asyncio.gather(*(feed.deliver_node(ctl, n) for n in sorted(feed.nodes))), 60)
        nodes = sim.nodes()
        assert all(n["spec"].get("podCIDR") for n in nodes)
        assert all(any(c["type"] == "NetworkUnavailable" and c["status"] == "False"
                       for c in n["status"]["conditions"]) for n in nodes)
        posts = sim.kube.requests.select(verb="create", resource="events", since=mark)
        assert posts and all(r.status == 0 for r in posts)  # every Event still unanswered: none waited on
        assert len(posts) <= 3  # one in flight per sender task
        assert ctl.events.dropped >= len(nodes) - 5  # three in flight, two queued, the rest shed
        dropped = ctl.metrics.registry.get_sample_value("routectl_events_dropped_total")
        assert dropped == ctl.events.dropped
    finally:
        sim.kube.clear_faults()
        await stop_controller(ctl)
        sim.stop()


async def test_a_shed_event_is_not_remembered_as_sent_and_queued_events_are_posted() -> None:
    sim = SimCluster(cloud="gce", nodes=0, resync_seconds=3600, run_controller=False).start()
    client = KubeClient(sim.kube.url, user_agent="routectl-test (events)")
    rec = EventRecorder(client, "default", queue_size=1, senders=1)
    node = {"kind": "Node", "apiVersion": "v1", "name": "node-x", "uid": "u-1"}
    try:
        fault = sim.kube.inject_fault(verb="create", resource="events", code=503, times=None, delay=120.0)
        assert rec.enqueue(node, "Normal", "A", "first")  # taken by the sender, which hangs on it
        while not fault.hits:
            await asyncio.sleep(0.01)
        assert rec.enqueue(node, "Normal", "B", "second")  # fills the queue
        assert not rec.enqueue(node, "Normal", "C", "third")  # queue full: shed
        assert rec.dropped == 1
        assert not rec.enqueue(node, "Normal", "B", "second")  # a repeat: deduped, not a drop
        assert rec.dropped == 1
        await rec.close()  # the hung post is abandoned
        sim.kube.clear_faults()
        assert rec.enqueue(node, "Normal", "C", "third")  # shed before, so not a repeat now
        await asyncio.wait_for(rec.flush(), 30)
        reasons = sorted(e["reason"] for e in sim.kube.list("v1", "Event", "default"))
        assert reasons == ["C"]
    finally:
        await rec.close()
        await client.close()
        sim.stop()
