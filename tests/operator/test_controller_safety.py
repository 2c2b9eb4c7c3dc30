"""Safety holes from review (issue 9): supervised background loops, Events never lost silently, the route
reconciler's threads stopped on shutdown. The real Controller against the API emulator and fake GCE."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from routectl.controller.kube import EventRecorder, KubeClient
from routectl.controller.main import HealthServer
from routectl.controller.metrics import Metrics
from routectl.controller.reconcile import Controller
from routectl.sim.cluster import SimCluster
from tests.operator.ctlharness import Delivery, new_controller, stop_controller


@pytest.fixture
async def harness() -> AsyncIterator[tuple[SimCluster, Controller, Delivery]]:
    sim = await asyncio.to_thread(lambda: SimCluster(cloud="gce", nodes=2, resync_seconds=3600,
                                                     run_controller=False).start())
    ctl = new_controller(sim)
    feed = Delivery(sim)
    feed.list_all()
    try:
        yield sim, ctl, feed
    finally:
        await stop_controller(ctl)
        await asyncio.to_thread(sim.stop)


async def test_a_crashed_route_batch_loop_is_restarted_and_no_handler_waits_forever(
        harness: tuple[SimCluster, Controller, Delivery], caplog: pytest.LogCaptureFixture) -> None:
    sim, ctl, feed = harness
    real = ctl.reporter.take_capacity
    calls = {"n": 0}

    def buggy(result: Any, full: bool) -> Any:  # an unexpected bug inside the batch loop, once
        calls["n"] += 1
        if not full and calls["n"] == 2:
            raise RuntimeError("injected bug in the route batch")
        return real(result, full)

    ctl.reporter.take_capacity = buggy  # type: ignore[method-assign]
    await asyncio.wait_for(feed.deliver_node(ctl, "node-0001"), 30)  # start-up sync (1st), then a batch
    sim.add_nodes(1)
    feed.observe()
    with caplog.at_level(logging.ERROR, logger="routectl.controller.reconcile"):
        await asyncio.wait_for(feed.deliver_node(ctl, "node-0003"), 30)  # the batch dies: handler returns
    assert ctl.loop_crashes == 1
    assert any("died; restarting" in r.getMessage() for r in caplog.records)
    await asyncio.wait_for(feed.deliver_node(ctl, "node-0002"), 30)  # the restarted loop serves again
    assert ctl.route_status["node-0002"].ok and ctl.healthy


async def test_a_loop_that_keeps_dying_turns_healthz_red(
        harness: tuple[SimCluster, Controller, Delivery]) -> None:
    _, ctl, feed = harness
    await feed.deliver_node(ctl, "node-0001")

    async def always_fails() -> None:
        raise RuntimeError("broken for good")

    ctl._spawn("routectl-test-loop", always_fails)
    server = HealthServer(Metrics(), lambda: True, "127.0.0.1", 0, healthy=lambda: ctl.healthy)
    port = await server.start()
    try:
        for _ in range(200):
            if not ctl.healthy:
                break
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 500
    finally:
        await server.stop()


async def test_close_stops_the_route_reconciler_threads(
        harness: tuple[SimCluster, Controller, Delivery]) -> None:
    _, ctl, feed = harness
    for name in ("node-0001", "node-0002"):
        await feed.deliver_node(ctl, name)
    assert any(t.name.startswith("routectl-routes") for t in threading.enumerate())
    before = {t for t in threading.enumerate() if t.name.startswith("routectl-routes")}
    await ctl.close()
    assert not [t for t in before if t.is_alive()], "route reconciler threads outlive the controller"


async def test_failed_event_posts_are_logged_rate_limited_and_land_in_default(
        harness: tuple[SimCluster, Controller, Delivery], caplog: pytest.LogCaptureFixture) -> None:
    sim, _, _ = harness
    client = KubeClient(sim.kube.url)
    try:
        rec = EventRecorder(client, "routectl-system", log_every=60.0)  # a Node's Event still goes to default
        node = {"kind": "Node", "apiVersion": "v1", "name": "node-0001", "uid": "u1"}
        await rec.post(node, "Normal", "Ok", "first")
        events = sim.kube.list("v1", "Event", "default")
        assert [e["message"] for e in events if e["involvedObject"]["name"] == "node-0001"] == ["first"]
        fault = sim.kube.inject_fault(verb="create", resource="events", code=403, times=3)
        with caplog.at_level(logging.WARNING, logger="routectl.controller.kube"):
            for i in range(3):
                await rec.post(node, "Warning", "Bad", f"lost {i}")
        assert fault.hits == 3 and rec.failed == 3
        logged = [r for r in caplog.records if "posting Event" in r.getMessage()]
        assert len(logged) == 1  # rate-limited: one line, not one per Event
    finally:
        await client.close()
