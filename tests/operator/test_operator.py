"""The real kopf operator against the Kubernetes API emulator over HTTP, with moto and the fake GCE server.

Each test starts a SimCluster (emulator + fake cloud + the controller through `run_controller`, the
same code path as `routectl controller`) and checks what a person would check: blocks, routes,
conditions, pool status, Events, and the API writes and cloud calls made.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from routectl.constants import (
    API_VERSION,
    CONDITION_NETWORK_UNAVAILABLE,
    EVENT_CIDR_ASSIGNED,
    EVENT_CIDR_NOT_AVAILABLE,
    EVENT_FAILED_TO_CREATE_ROUTE,
    EVENT_ROUTE_LIMIT_REACHED,
    POOL_KIND,
    POOL_PLURAL,
    POOL_READY,
    POOL_ROUTE_LIMIT_REACHED,
    REASON_NO_ROUTE_CREATED,
    REASON_ROUTE_CREATED,
)
from routectl.sim.cluster import SimCluster
from tests.operator.conftest import condition, mutating_cloud_calls, node_events, pool_events, wait_for

CLOUDS = ["aws", "gce"]
POOL = ipaddress.ip_network("10.244.0.0/16")


def _pool(sim: SimCluster, name: str = "default") -> dict[str, Any]:
    return sim.kube.get(API_VERSION, POOL_KIND, name)


def _netcond(sim: SimCluster, name: str) -> dict[str, Any]:
    return condition(sim.kube.get("v1", "Node", name), CONDITION_NETWORK_UNAVAILABLE)


def _expected_hop(sim: SimCluster, node: dict[str, Any]) -> str:
    name = node["metadata"]["name"]
    if sim.cloud == "aws":
        return sim.aws.nodes[name]["eni"]
    zone = node["metadata"]["labels"]["topology.kubernetes.io/zone"]
    return f"zones/{zone}/instances/{name}"


def _hop_matches(sim: SimCluster, hop: str | None, expected: str) -> bool:
    return hop is not None and (hop == expected if sim.cloud == "aws" else hop.endswith("/" + expected))


@pytest.mark.parametrize("cloud", CLOUDS)
def test_sixty_nodes_get_unique_blocks_routes_and_cleared_conditions(make_sim: Any, cloud: str) -> None:
    sim = make_sim(cloud=cloud, nodes=60, route_limit=200)
    assert sim.wait_converged(90), sim.snapshot().to_dict()
    nodes = sim.nodes()
    assert len(nodes) == 60
    cidrs = [n["spec"]["podCIDR"] for n in nodes]
    assert len(set(cidrs)) == 60, "two nodes share a block"
    routes = sim.cloud_routes()
    for n in nodes:
        net = ipaddress.ip_network(n["spec"]["podCIDR"])
        assert net.prefixlen == 24 and net.subnet_of(POOL)
        assert n["spec"]["podCIDRs"] == [n["spec"]["podCIDR"]]
        cond = condition(n, CONDITION_NETWORK_UNAVAILABLE)
        assert (cond["status"], cond["reason"]) == ("False", REASON_ROUTE_CREATED)
        # the kubelet's other conditions survived the strategic-merge status patch
        assert condition(n, "Ready")["reason"] == "KubeletReady"
        assert len(n["status"]["conditions"]) == 5
        assert _hop_matches(sim, routes.get(n["spec"]["podCIDR"]), _expected_hop(sim, n))
    status = _pool(sim)["status"]
    assert (status["allocated"], status["capacity"], status["free"]) == (60, 256, 196)
    assert status["routesProgrammed"] == 60
    assert status["observedGeneration"] == 1
    assert condition(_pool(sim), POOL_READY)["status"] == "True"
    assert condition(_pool(sim), POOL_ROUTE_LIMIT_REACHED)["status"] == "False"
    preexisting = 2 if cloud == "aws" else 0  # AWS: the local route and the IGW default route
    # AWS counts IPv4 and IPv6 routes apart: a second, empty IPv6 capacity per table
    v6 = [(0, 200)] if cloud == "aws" else []
    assert [(t["used"], t["limit"]) for t in status["routeTables"]] == [(60 + preexisting, 200), *v6]
    assert any(e["reason"] == EVENT_CIDR_ASSIGNED for e in node_events(sim, nodes[0]["metadata"]["name"]))


@pytest.mark.parametrize("cloud", CLOUDS)
def test_route_limit_reached_reported_on_pool_and_refused_nodes(make_sim: Any, cloud: str) -> None:
    sim = make_sim(cloud=cloud, nodes=60, route_limit=50)
    assert sim.wait_converged(90), sim.snapshot().to_dict()
    fits = 48 if cloud == "aws" else 50  # the AWS table already holds the local and the IGW route
    nodes = sim.nodes()
    routed = [n for n in nodes if condition(n, CONDITION_NETWORK_UNAVAILABLE)["status"] == "False"]
    refused = [n for n in nodes if condition(n, CONDITION_NETWORK_UNAVAILABLE)["status"] == "True"]
    assert (len(routed), len(refused)) == (fits, 60 - fits)
    routes = sim.cloud_routes()
    for n in routed:
        assert _hop_matches(sim, routes.get(n["spec"]["podCIDR"]), _expected_hop(sim, n))
    for n in refused:
        cond = condition(n, CONDITION_NETWORK_UNAVAILABLE)
        assert cond["reason"] == REASON_NO_ROUTE_CREATED
        assert cond["message"].startswith("RouteLimitReached")
        assert n["spec"]["podCIDR"] not in routes
    first_refused = refused[0]["metadata"]["name"]
    assert any(e["reason"] == EVENT_FAILED_TO_CREATE_ROUTE for e in node_events(sim, first_refused))
    pool = _pool(sim)
    reached = condition(pool, POOL_ROUTE_LIMIT_REACHED)
    assert reached["status"] == "True"
    advice = reached["message"]
    assert "overlay" in advice
    assert ("L-93826ACB" in advice) if cloud == "aws" else ("STATIC_ROUTES_PER_NETWORK" in advice)
    assert condition(pool, POOL_READY)["status"] == "False"
    assert pool["status"]["routesProgrammed"] == fits
    v6 = [(0, 50)] if cloud == "aws" else []  # AWS counts IPv6 routes apart
    assert [(t["used"], t["limit"]) for t in pool["status"]["routeTables"]] == [(50, 50), *v6]
    assert any(e["reason"] == EVENT_ROUTE_LIMIT_REACHED for e in pool_events(sim, "default"))
    assert len(routes) == 50


def test_deleting_routed_nodes_gives_refused_nodes_the_room_before_any_resync(make_sim: Any) -> None:
    """Freed route-table room is used at once (one resync for the whole deletion burst), not after the
    periodic resync (300 s here), and the pool stops saying the table is full."""
    sim = make_sim(cloud="aws", nodes=55, route_limit=50, resync_seconds=300)
    assert sim.wait_converged(90), sim.snapshot().to_dict()

    def refused() -> list[str]:
        return sorted(n["metadata"]["name"] for n in sim.nodes()
                      if condition(n, CONDITION_NETWORK_UNAVAILABLE)["status"] == "True")

    waiting = refused()
    assert len(waiting) == 7  # 48 fit next to the local and the IGW route
    assert [(t["used"], t["limit"]) for t in _pool(sim)["status"]["routeTables"]] == [(50, 50), (0, 50)]
    routed = [n for n in sim.node_names if n not in waiting][:8]
    resyncs = sim.controllers[0].controller.resyncs
    for name in routed:
        sim.delete_node(name)
    wait_for(lambda: refused() == [], 30)
    routes = sim.cloud_routes()
    for n in sim.nodes():
        assert _hop_matches(sim, routes.get(n["spec"]["podCIDR"]), _expected_hop(sim, n))

    def table_room() -> bool:
        status = _pool(sim)["status"]
        return [(t["used"], t["limit"]) for t in status["routeTables"]] == [(49, 50), (0, 50)] and \
            condition(_pool(sim), POOL_ROUTE_LIMIT_REACHED).get("status") != "True"
    wait_for(table_room, 30)
    assert _pool(sim)["status"]["routesProgrammed"] == 47
    assert sim.controllers[0].controller.resyncs - resyncs <= 2  # a burst of deletions, not one per node


def _foreign_routes(sim: SimCluster) -> list[str]:
    """Add routes someone else owns, inside and outside the cluster CIDR; return their destinations."""
    dests = ["10.244.250.0/24", "192.168.50.0/24"]
    if sim.cloud == "aws":
        table = sim.aws.route_table_ids[0]
        for d in dests:
            sim.aws.add_foreign_route(table, d, GatewayId=sim.aws.igw_id)
    else:
        gw = f"projects/{sim.gce.project}/global/gateways/default-internet-gateway"
        for i, d in enumerate(dests):
            sim.gce.add_foreign_route(f"other-team-{i}", d, next_hop_gateway=gw)
    return dests


@pytest.mark.parametrize("cloud", CLOUDS)
def test_deleted_nodes_lose_routes_then_blocks_and_foreign_routes_survive(make_sim: Any, cloud: str) -> None:
    sim = make_sim(cloud=cloud, nodes=20, route_limit=200, resync_seconds=2.0)
    assert sim.wait_converged(60)
    foreign = _foreign_routes(sim)
    nodes = sorted(sim.nodes(), key=lambda n: n["metadata"]["name"])
    victims = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes[:8]}
    for name in victims:
        sim.delete_node(name)

    def cleaned() -> bool:
        routes = sim.cloud_routes()
        status = _pool(sim).get("status") or {}
        return not (set(victims.values()) & set(routes)) and status.get("allocated") == 12
    wait_for(cleaned, 60)
    status = _pool(sim)["status"]
    assert (status["free"], status["routesProgrammed"]) == (244, 12)
    routes = sim.cloud_routes()
    for d in foreign:
        assert d in routes, f"foreign route {d} was deleted"
    for n in sim.nodes():
        assert _hop_matches(sim, routes.get(n["spec"]["podCIDR"]), _expected_hop(sim, n))
    # several resync periods later the foreign routes are still there
    resyncs = sim.controllers[0].controller.resyncs
    wait_for(lambda: sim.controllers[0].controller.resyncs >= resyncs + 2, 30)
    assert all(d in sim.cloud_routes() for d in foreign)
    # new nodes get blocks again, none shared
    sim.add_nodes(8)
    assert sim.wait_converged(60)
    cidrs = [n["spec"]["podCIDR"] for n in sim.nodes()]
    assert len(cidrs) == 20 and len(set(cidrs)) == 20


@pytest.mark.parametrize("cloud", CLOUDS)
def test_restart_on_converged_cluster_makes_no_node_writes_and_no_cloud_changes(make_sim: Any,
                                                                                cloud: str) -> None:
    sim = make_sim(cloud=cloud, nodes=30, route_limit=200)
    assert sim.wait_converged(60)
    time.sleep(0.5)  # let the pool status settle too
    sim.controllers[0].stop()
    assert sim.controllers[0].exit_code == 0
    mark = sim.kube.requests.mark()
    (sim.aws or sim.gce).reset_log()

    second = sim.start_controller(resync_seconds=1.0)
    # every node occupied from the LIST and its route status applied by the initial resync, then two
    # periodic resyncs (each marks the pools dirty, so a pool-status flush ran in between): nothing written
    wait_for(lambda: second.controller is not None and second.controller.ready
             and len(second.controller.allocator.allocations()) == 30 and second.controller.resyncs >= 3, 60)
    before = second.controller.resyncs
    node_writes = sim.kube.requests.select(resource="nodes", writes=True, since=mark)
    assert node_writes == [], [(r.method, r.path) for r in node_writes]
    pool_writes = sim.kube.requests.select(resource=POOL_PLURAL, writes=True, since=mark)
    assert pool_writes == [], [(r.method, r.path) for r in pool_writes]
    assert mutating_cloud_calls(sim) == 0
    lists = (sim.aws.calls("ec2:DescribeRouteTables") if cloud == "aws"
             else sim.gce.calls("compute.routes.list"))
    assert before <= lists <= second.controller.resyncs + 1  # one list per table per resync, no more
    assert sim.converged()


def test_exhausted_pool_reports_then_appended_cidr_serves_at_once(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=5, pool_cidr="10.244.0.0/22")
    waiting = wait_for(lambda: [n for n in sim.nodes() if not n["spec"].get("podCIDR")] and
                       condition(_pool(sim), "Exhausted").get("status") == "True" and
                       [n for n in sim.nodes() if not n["spec"].get("podCIDR")], 60)
    assert len(waiting) == 1
    name = waiting[0]["metadata"]["name"]
    assert any(e["reason"] == "CIDRNotAvailable" for e in node_events(sim, name))
    pool = _pool(sim)
    assert (pool["status"]["allocated"], pool["status"]["free"]) == (4, 0)
    sim.kube.patch(API_VERSION, POOL_KIND, "default", {"spec": {"cidrs": ["10.244.0.0/22", "10.245.0.0/24"]}})
    node = wait_for(lambda: sim.kube.get("v1", "Node", name)["spec"].get("podCIDR") and
                    sim.kube.get("v1", "Node", name), 30)
    assert node["spec"]["podCIDR"] == "10.245.0.0/24"
    assert sim.wait_converged(30)
    wait_for(lambda: condition(_pool(sim), "Exhausted").get("status") == "False", 30)


def test_overlapping_edit_marks_pool_invalid_and_existing_nodes_keep_blocks(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=2)
    assert sim.wait_converged(30)
    sim.create_pool("second", ["10.250.0.0/16"], node_selector={"pool": "second"})
    # a node that registers before the controller has seen its pool is served by the pool it saw: wait
    # until "second" reports status (the controller knows it) before adding its node
    wait_for(lambda: condition(_pool(sim, "second"), POOL_READY).get("status"), 30)
    first = sim.add_nodes(1, prefix="second", labels={"pool": "second"})[0]
    assert sim.wait_converged(30)
    kept = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in sim.nodes()}
    assert kept[first].startswith("10.250.")
    overlapping = "10.244.128.0/17"
    sim.kube.patch(API_VERSION, POOL_KIND, "second", {"spec": {"cidrs": ["10.250.0.0/16", overlapping]}})
    invalid = wait_for(lambda: condition(_pool(sim, "second"), "Invalid").get("status") == "True" and
                       condition(_pool(sim, "second"), "Invalid"), 30)
    assert overlapping in invalid["message"]
    assert condition(_pool(sim, "second"), POOL_READY)["status"] == "False"
    assert condition(_pool(sim, "default"), "Invalid")["status"] == "False"
    assert any(e["reason"] == "PoolInvalid" for e in pool_events(sim, "second"))
    second = sim.add_nodes(1, prefix="second", labels={"pool": "second"})[0]
    node = wait_for(lambda: sim.kube.get("v1", "Node", second)["spec"].get("podCIDR") and
                    sim.kube.get("v1", "Node", second), 30)
    assert not ipaddress.ip_network(node["spec"]["podCIDR"]).subnet_of(ipaddress.ip_network(overlapping))
    now = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in sim.nodes()}
    assert {name: now[name] for name in kept} == kept


def test_pool_finalizer_keeps_pool_while_nodes_hold_blocks(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=3)
    assert sim.wait_converged(30)
    assert "routectl.io/in-use" in _pool(sim)["metadata"]["finalizers"]
    sim.kube.delete(API_VERSION, POOL_KIND, "default")
    status = wait_for(lambda: condition(_pool(sim), POOL_READY).get("reason") == "InUse" and
                      _pool(sim)["status"], 30)
    assert sorted(n["name"] for n in status["nodes"]) == sorted(n["metadata"]["name"] for n in sim.nodes())
    assert sim.kube.exists(API_VERSION, POOL_KIND, "default")
    # a pool being deleted hands out nothing new
    late = sim.add_nodes(1)[0]
    wait_for(lambda: any(e["reason"] == "CIDRNotAvailable" for e in node_events(sim, late)), 30)
    assert not sim.kube.get("v1", "Node", late)["spec"].get("podCIDR")
    for name in list(sim.node_names):
        sim.delete_node(name)
    wait_for(lambda: not sim.kube.exists(API_VERSION, POOL_KIND, "default"), 60)


def test_block_is_released_only_after_its_route_is_deleted(make_sim: Any) -> None:
    from routectl.cloud.ratelimit import TokenBucket

    sim = make_sim(cloud="gce", nodes=4, resync_seconds=1.0)
    assert sim.wait_converged(30)
    controller = sim.controllers[0].controller
    victim = sim.node_names[0]
    cidr = sim.kube.get("v1", "Node", victim)["spec"]["podCIDR"]
    # The fake cloud answers every mutating call with 429 from now on: the route cannot be deleted.
    empty = TokenBucket(1e-6, 1)
    empty.try_acquire()
    sim.gce.bucket = empty
    sim.delete_node(victim)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert cidr in sim.cloud_routes()
        held = controller.allocator.allocation_of(victim)
        assert held is not None and held.cidrs == (cidr,), "block released while its route still exists"
        time.sleep(0.1)
    assert _pool(sim)["status"]["allocated"] == 4
    sim.gce.bucket = None  # the cloud recovers: the route goes, then the block
    wait_for(lambda: controller.allocator.allocation_of(victim) is None, 60)
    assert cidr not in sim.cloud_routes()
    wait_for(lambda: _pool(sim)["status"]["allocated"] == 3, 30)


def test_route_limit_nearing_is_a_warning_before_any_refusal(make_sim: Any) -> None:
    sim = make_sim(cloud="aws", nodes=40, route_limit=50)  # 42 of 50 routes: past the 80 % default
    assert sim.wait_converged(60)
    pool = _pool(sim)
    nearing = condition(pool, "RouteLimitNearing")
    assert nearing["status"] == "True" and "L-93826ACB" in nearing["message"]
    assert condition(pool, POOL_ROUTE_LIMIT_REACHED)["status"] == "False"
    assert condition(pool, POOL_READY)["status"] == "True"
    assert all(condition(n, CONDITION_NETWORK_UNAVAILABLE)["status"] == "False" for n in sim.nodes())
    assert any(e["reason"] == "RouteLimitNearing" for e in pool_events(sim, "default"))


def test_preset_podcidrs_outside_pool_or_shared_are_reported_and_left_alone(make_sim: Any) -> None:
    from routectl.sim.cluster import kubelet_node

    sim = make_sim(cloud="gce", nodes=1)
    assert sim.wait_converged(30)
    presets = {"odd-outside": "172.16.5.0/24", "odd-dup-a": "10.244.200.0/24", "odd-dup-b": "10.244.200.0/24"}
    for name, cidr in presets.items():
        body = kubelet_node(name, sim.gce.add_instance("us-central1-a", name), "us-central1-a")
        body["spec"]["podCIDR"] = cidr
        sim.kube.create(body)
        if name == "odd-dup-a":  # the first holder must be seen first
            wait_for(lambda: _netcond(sim, "odd-dup-a").get("status") == "False", 30)
    wait_for(lambda: all(any(e["reason"] == "CIDRConflict" for e in node_events(sim, n))
                         for n in ("odd-outside", "odd-dup-b")), 30)
    for name, cidr in presets.items():
        assert sim.kube.get("v1", "Node", name)["spec"]["podCIDR"] == cidr  # never changed
    routes = sim.cloud_routes()
    assert "172.16.5.0/24" not in routes
    wait_for(lambda: _netcond(sim, "odd-outside").get("message") != "Node created without a route", 30)
    outside = _netcond(sim, "odd-outside")
    assert outside["status"] == "True" and "no pool" in outside["message"]
    # the first holder by name keeps the shared block routed; the other is not routed
    wait_for(lambda: _netcond(sim, "odd-dup-a").get("status") == "False", 30)
    assert _netcond(sim, "odd-dup-b")["status"] == "True"
    hop = sim.cloud_routes().get("10.244.200.0/24")
    assert _hop_matches(sim, hop, "zones/us-central1-a/instances/odd-dup-a")
    # new nodes never get the shared block
    sim.add_nodes(3)
    wait_for(lambda: all(n["spec"].get("podCIDR") for n in sim.nodes()), 30)
    cidrs = [n["spec"]["podCIDR"] for n in sim.nodes()]
    assert cidrs.count("10.244.200.0/24") == 2 and len(set(cidrs)) == len(cidrs) - 1


@pytest.mark.parametrize("cloud", CLOUDS)
def test_dual_stack_pool_gives_one_block_per_family_and_routes_both(make_sim: Any, cloud: str) -> None:
    sim = make_sim(cloud=cloud, nodes=0, route_limit=200)
    sim.kube.delete(API_VERSION, POOL_KIND, "default")
    wait_for(lambda: not sim.kube.exists(API_VERSION, POOL_KIND, "default"), 30)
    sim.create_pool("dual", ["10.244.0.0/16", "fd00:10:244::/56"], nodeMaskSizeIPv6=64)
    sim.add_nodes(3)
    assert sim.wait_converged(60), sim.snapshot().to_dict()
    routes = sim.cloud_routes()
    seen: set[str] = set()
    for n in sim.nodes():
        v4, v6 = n["spec"]["podCIDRs"]
        assert n["spec"]["podCIDR"] == v4
        assert ipaddress.ip_network(v4).prefixlen == 24 and ipaddress.ip_network(v6).prefixlen == 64
        assert ipaddress.ip_network(v6).subnet_of(ipaddress.ip_network("fd00:10:244::/56"))
        for c in (v4, v6):
            assert _hop_matches(sim, routes.get(c), _expected_hop(sim, n))
        seen |= {v4, v6}
    assert len(seen) == 6


def _podcidr_patches(sim: SimCluster, name: str) -> int:
    return sim.kube.requests.count(verb="patch", resource="nodes", subresource=None, name=name)


def test_podcidr_refused_by_validation_is_reported_once_not_retried(make_sim: Any) -> None:
    """A 422 with the node unchanged is the API refusing the value, not a lost race: release the block,
    say why in a Warning Event, stop (no eight blind retries, no block held by a node without it)."""
    sim = make_sim(cloud="gce", nodes=1)
    assert sim.wait_converged(60)
    sim.kube.inject_fault(verb="patch", resource="nodes", subresource=None, name="node-0002", code=422,
                          reason="Invalid", message="spec.podCIDRs: Invalid value: forbidden by policy",
                          times=None)
    sim.add_nodes(1)

    def refusal() -> list[dict[str, Any]]:
        return [e for e in node_events(sim, "node-0002") if e["reason"] == EVENT_CIDR_NOT_AVAILABLE]
    events = wait_for(refusal, 30)
    assert "forbidden by policy" in events[0]["message"]
    assert _podcidr_patches(sim, "node-0002") == 1
    assert not sim.kube.get("v1", "Node", "node-0002").get("spec", {}).get("podCIDR")
    wait_for(lambda: _pool(sim)["status"]["allocated"] == 1, 30)


def test_podcidr_write_that_lost_a_race_is_retried(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=1)
    assert sim.wait_converged(60)
    fault = sim.kube.inject_fault(verb="patch", resource="nodes", subresource=None, name="node-0002",
                                  code=409, times=2)
    sim.add_nodes(1)
    assert sim.wait_converged(60)
    assert fault.hits == 2
    assert sim.kube.get("v1", "Node", "node-0002")["spec"]["podCIDR"]
    assert not [e for e in node_events(sim, "node-0002") if e["reason"] == EVENT_CIDR_NOT_AVAILABLE]
    assert len({n["spec"]["podCIDR"] for n in sim.nodes()}) == 2
