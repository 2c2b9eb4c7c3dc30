"""A new leader hands out blocks from its Node LIST at once, while the first route sync (and the cloud SDK's
import) is still running; routes and NetworkUnavailable wait for that sync (issue 15: the first block
within a second of start)."""

from __future__ import annotations

import threading
import time
from typing import Any

from routectl.constants import CONDITION_NETWORK_UNAVAILABLE
from tests.operator.conftest import wait_for


def _unavailable(node: dict[str, Any]) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == CONDITION_NETWORK_UNAVAILABLE:
            return str(c.get("status"))
    return None


def test_blocks_go_out_before_the_first_route_sync_but_routes_and_conditions_wait_for_it(
        make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=0, run_controller=False)
    old = sim.add_nodes(6)
    for i, name in enumerate(old):  # blocks a previous leader wrote
        cidr = f"10.244.{i}.0/24"
        sim.kube.patch("v1", "Node", name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
    new = sim.add_nodes(6)
    gate = threading.Event()
    permission = sim.gce._permission

    def held_list(method: str, rest: list[str]) -> tuple[str, bool]:
        perm, mutating = permission(method, rest)
        if perm == "compute.routes.list":  # the cloud's route list answers only when the test says so
            gate.wait(60)  # (here, before the fake takes its lock: the test reads the fake meanwhile)
        return perm, mutating

    sim.gce._permission = held_list  # type: ignore[method-assign]
    try:
        sim.start_controller()
        wait_for(lambda: all(n["spec"].get("podCIDR") for n in sim.nodes()), 30)
        nodes = {n["metadata"]["name"]: n for n in sim.nodes()}
        cidrs = [nodes[n]["spec"]["podCIDR"] for n in old + new]
        assert len(set(cidrs)) == 12, f"a block was handed out twice: {cidrs}"
        assert [nodes[n]["spec"]["podCIDR"] for n in old] == [f"10.244.{i}.0/24" for i in range(6)]
        # no route before the routes are known, and the kubelet's NetworkUnavailable=True stands
        assert sim.gce.calls("compute.routes.insert") == 0
        assert all(_unavailable(nodes[n]) == "True" for n in new)
    finally:
        gate.set()
    assert sim.wait_converged(60)
    assert all(_unavailable(n) == "False" for n in sim.nodes())


def test_nodes_served_before_the_first_route_sync_are_routed_and_reported_a_few_at_a_time(
        make_sim: Any, monkeypatch: Any) -> None:
    """All of them at once made one route batch of every node: no condition before the last route, and
    thousands of condition writes queued together (60 MB at 5,000 nodes). A few at a time, the first
    nodes are reported while later routes are still being made. (Both ways in are narrowed here, the
    pass over the early nodes and the watch events' dispatcher, so the test needs only a few nodes.)"""
    from routectl.controller import reconcile
    from routectl.controller.dispatch import Dispatcher

    class FewAtATime(Dispatcher):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw, limit=4)

    monkeypatch.setattr(reconcile, "SERVE_CONCURRENCY", 4)
    monkeypatch.setattr(reconcile, "Dispatcher", FewAtATime)
    n = 24
    sim = make_sim(cloud="gce", nodes=0, run_controller=False)
    names = sim.add_nodes(n)
    gate = threading.Event()
    permission = sim.gce._permission

    def held_list(method: str, rest: list[str]) -> tuple[str, bool]:
        perm, mutating = permission(method, rest)
        if perm == "compute.routes.list":
            gate.wait(60)
        return perm, mutating

    sim.gce._permission = held_list  # type: ignore[method-assign]
    try:
        sim.start_controller(cloud_rate=20.0, cloud_burst=1)  # one route per 50 ms: ~1.2 s for all
        wait_for(lambda: all(x["spec"].get("podCIDR") for x in sim.nodes()), 30)
    finally:
        gate.set()
    routes_at_first_report = None
    deadline = time.monotonic() + 60
    while routes_at_first_report is None and time.monotonic() < deadline:
        routes = sim.gce.calls("compute.routes.insert")  # before the nodes: a report seen implies these
        if any(_unavailable(x) == "False" for x in sim.nodes()):
            routes_at_first_report = routes
        time.sleep(0.01)
    assert routes_at_first_report is not None, "no node was reported routed"
    assert routes_at_first_report < n // 2, (
        f"the first NetworkUnavailable=False came after {routes_at_first_report} of {n} routes")
    assert sim.wait_converged(60)
    assert sorted(x["metadata"]["name"] for x in sim.nodes() if _unavailable(x) == "False") == sorted(names)
