"""Representative routectl workloads whose API traffic the least-privilege tests check.

`cluster_workload(cloud)` runs the real controller (`run_controller`, as `routectl controller` does) on a
SimCluster, then the real agent's Kubernetes client, and returns every HTTP request each made to the
Kubernetes API emulator plus every call the fake cloud served while the controller ran.
`driver_workload(cloud)` drives the real cloud driver through the paths a short cluster run may not
reach (name conflicts, replacing a wrong or blackholed next hop, a denied quota read).
Arrangement (instances, tables, nodes) happens before the logs are reset, so the logs hold routectl's
calls only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from routectl.constants import API_VERSION, POOL_KIND
from routectl.routes.model import NodeRoutes

NAMESPACE = "routectl-system"
EVENT_NAMESPACE = "default"
# The Lease the deploy/ manifests grant (Role routectl-controller, resourceNames).
LEASE_NAME = "routectl-controller"


@dataclass
class Trace:
    """What one workload did: Kubernetes requests by component, and the fake cloud's call log."""

    controller_requests: list[Any] = field(default_factory=list)
    agent_requests: list[Any] = field(default_factory=list)
    cloud_calls: list[str] = field(default_factory=list)


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll `cond` until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _cloud_log(sim: Any) -> list[str]:
    if sim.cloud == "aws":
        return list(sim.aws.call_log)
    return [label for _, label in sim.gce.call_log]


def _reset_cloud_log(sim: Any) -> None:
    (sim.aws if sim.cloud == "aws" else sim.gce).reset_log()


def cluster_workload(cloud: str) -> Trace:
    """Nodes join, one leaves, a route goes wrong and is repaired, a pool comes and goes, the leader
    steps down; then the agent reads its Node and the pools, watches them and posts an Event."""
    from routectl.sim.cluster import SimCluster, kubelet_node

    trace = Trace()
    with SimCluster(cloud=cloud, nodes=3, resync_seconds=0.5, run_controller=False) as sim:
        sim.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        zone = sim.zones[0]
        if cloud == "aws":  # a node whose source/dest check is still on: the driver turns it off
            pid = sim.aws.add_node("node-sdc", zone, source_dest_check=True)
        else:
            pid = sim.gce.add_instance(zone, "node-sdc")
        _reset_cloud_log(sim)
        mark = sim.kube.requests.mark()
        sim.kube.create(kubelet_node("node-sdc", pid, zone))
        controller = sim.start_controller(lease_name=LEASE_NAME, lease_namespace=NAMESPACE,
                                          event_namespace=EVENT_NAMESPACE)
        wait_for(sim.converged, "the nodes to get CIDRs and routes")

        # A node leaves (its instance stays, so no arrangement call is logged): its route goes.
        gone = sim.node_names[0]
        cidr = sim.kube.get("v1", "Node", gone)["spec"]["podCIDR"]
        sim.delete_node(gone, instance=False)
        wait_for(lambda: cidr not in sim.cloud_routes(), "the departed node's route to be deleted")

        # A route goes wrong: AWS blackhole (instance gone) / GCE next hop changed behind our back.
        victim = sim.kube.get("v1", "Node", sim.node_names[0])["spec"]["podCIDR"]
        if cloud == "aws":
            sim.aws.blackhole(sim.aws.route_table_ids[0], victim)
            wait_for(lambda: sim.aws.calls("ec2:ReplaceRoute") > 0, "the blackhole to be replaced")
        else:
            with sim.gce._lock:
                route = next(r for r in sim.gce.routes.values() if r["destRange"] == victim)
                route["nextHopInstance"] = route["nextHopInstance"].rsplit("/", 1)[0] + "/somebody-else"
            wait_for(lambda: victim in sim.cloud_routes()
                     and not str(sim.cloud_routes()[victim]).endswith("/somebody-else"),
                     "the wrong next hop to be replaced")

        # A second pool is created and deleted: finalizer added, status written, finalizer removed.
        sim.create_pool("extra", ["10.250.0.0/16"], node_selector={"pool": "extra"})
        wait_for(lambda: bool(sim.kube.get(API_VERSION, POOL_KIND, "extra")["metadata"].get("finalizers")),
                 "the finalizer on the new pool")
        sim.kube.delete(API_VERSION, POOL_KIND, "extra")
        wait_for(lambda: not sim.kube.exists(API_VERSION, POOL_KIND, "extra"), "the pool to be deleted")

        controller.stop()  # releases the Lease
        assert controller.error is None, controller.error
        trace.controller_requests = sim.kube.requests.select(since=mark)
        trace.cloud_calls = _cloud_log(sim)

        mark = sim.kube.requests.mark()
        _agent_session(sim, sim.node_names[-1])
        trace.agent_requests = sim.kube.requests.select(since=mark)
    return trace


def _agent_session(sim: Any, node_name: str) -> None:
    """The agent's real Kubernetes client as deployed (overlay on): fetch, list every Node, watch (and see
    a change), post an Event."""
    from routectl.agent.kube import KubeSource, load_api_client

    source = KubeSource(load_api_client(sim.kube.kubeconfig_path), node_name, watch_all_nodes=True)
    node, pools = source.fetch()
    assert node["metadata"]["name"] == node_name and pools
    assert node_name in {n["metadata"]["name"] for n in source.list_nodes()}
    trigger, stop = threading.Event(), threading.Event()
    threads = source.start_watches(trigger, stop)
    try:
        time.sleep(0.5)
        trigger.clear()
        sim.create_pool("agent-seen", ["10.251.0.0/16"])
        wait_for(trigger.is_set, "the agent's watch to notice a pool change", timeout=20)
        source.record_event("invalid masquerade input (workload)")
    finally:
        stop.set()
        source.stop_watches()
        for t in threads:
            t.join(timeout=10)


# ------------------------------------------------------------------------------------- drivers
def driver_workload(cloud: str) -> list[str]:
    """The driver's less common paths against the fake cloud; returns the fake's call log."""
    return _gce_driver_workload() if cloud == "gce" else _aws_driver_workload()


def _gce_driver_workload() -> list[str]:
    from routectl.cloud.gce import GCERouteDriver
    from routectl.sim.fake_gce import FakeGCE

    with FakeGCE() as fake:
        pid_a = fake.add_instance("us-central1-a", "node-a")
        pid_b = fake.add_instance("us-central1-a", "node-b")
        fake.reset_log()
        driver = GCERouteDriver(fake.project, fake.network, "wl", endpoint=fake.endpoint)
        node = NodeRoutes("node-a", "uid-a", pid_a, ("10.244.1.0/24",))
        target = driver.resolve(node)
        table = driver.list_tables()[0]
        driver.create(table, "10.244.1.0/24", target, node)
        driver.create(table, "10.244.1.0/24", target, node)  # 409 alreadyExists -> routes.get, same
        other = driver.resolve(NodeRoutes("node-b", "uid-b", pid_b, ()))
        driver.create(table, "10.244.1.0/24", other, node)  # 409, different next hop -> replace
        routes = [r for r in driver.list_routes() if r.owned]
        assert [r.target for r in routes] == [other]
        driver.capacity(routes)
        driver.delete(routes[0])
        # Many nodes in one zone are resolved with a paged instance list instead of one GET each.
        bulk = GCERouteDriver(fake.project, fake.network, "wl", endpoint=fake.endpoint,
                              instance_list_threshold=2)
        resolved = bulk.resolve_many([node, NodeRoutes("node-b", "uid-b", pid_b, ("10.244.2.0/24",))])
        assert resolved == {"node-a": target, "node-b": other}, resolved
        return [label for _, label in fake.call_log]


def _aws_driver_workload() -> list[str]:
    from routectl.cloud.aws import AWSRouteDriver
    from routectl.sim.aws import MotoAWS

    with MotoAWS(cluster_id="wl", deny_quota=True) as fake:
        pid_a = fake.add_node("node-a", source_dest_check=True)
        pid_b = fake.add_node("node-b", source_dest_check=False)
        fake.reset_log()
        driver = AWSRouteDriver("wl", fake.region, cluster_cidrs=["10.244.0.0/16"],
                                endpoint_url=fake.endpoint, session=fake.session())
        node = NodeRoutes("node-a", "uid-a", pid_a, ("10.244.1.0/24",))
        table = driver.list_tables()[0]
        target = driver.resolve(node)  # source/dest check on: ModifyNetworkInterfaceAttribute
        driver.create(table, "10.244.1.0/24", target, node)
        fake.blackhole(table, "10.244.1.0/24")
        routes = [r for r in driver.list_routes() if r.owned]
        other = driver.resolve(NodeRoutes("node-b", "uid-b", pid_b, ()))
        driver.replace(routes[0], other, node)
        driver.capacity(driver.list_routes())  # quota read denied: falls back to 50, says so
        driver.delete(next(r for r in driver.list_routes() if r.owned))
        return list(fake.call_log)
