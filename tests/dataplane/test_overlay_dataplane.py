"""The VXLAN fallback carries real pod traffic: three nodes, the router has routes for A and B only (the
table is full), C is on the overlay. Pods are wired by the real CNI plugins (tests/dataplane/scenario.py).

Asserts: pod A ↔ pod C keeps both addresses and crosses the VXLAN devices (their counters move); pod A →
pod B goes through the router and the VXLAN counters stay still; pod C → internet is masqueraded to node
C's IP; after the agent's --cleanup on C, A → C fails; once C has a route and its annotation is gone,
A ↔ C works without encapsulation.

The cloud variant (both clouds): routectl's route reconciler fills a table whose fake quota fits two node
routes, C is refused, routes/fallback.decide() puts it on the overlay; the router gets exactly the
routes read back from the cloud; raising the quota gives C its route and decide() takes it off the
overlay only then. (The kopf controller does not call decide() yet: see the note of issue 13.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest

from routectl.agent.overlay import OverlaySettings
from routectl.agent.vxlan import OverlaySync, VxlanSyncer
from routectl.cloud.factory import make_driver
from routectl.cloud.reconcile import RouteReconciler
from routectl.constants import TRANSPORT_ANNOTATION
from routectl.routes.fallback import (
    EVENT_ROUTE_OVERLAY,
    EVENT_ROUTE_RESTORED,
    REASON_ROUTE_OVERLAY,
    decide,
    reached_for,
)
from routectl.routes.model import NodeRoutes
from tests.dataplane import scenario, topology
from tests.dataplane.netns import Netns, start_peer_server
from tests.dataplane.scenario import PORT, Lab
from tests.dataplane.topology import NodeSpec

pytestmark = pytest.mark.dataplane

NODES = {**scenario.NODES, "c": NodeSpec("10.0.0.12", ("10.244.2.0/24",))}
DEV = "routectl.vxlan"
OVERLAY_POOL = {**scenario.POOL, "spec": {**scenario.POOL["spec"], "routeLimitFallback": "Overlay"}}


def node_list(overlay: set[str]) -> list[dict]:
    out = []
    for name in NODES:
        obj = scenario.node_object(name, NODES)
        if name in overlay:
            obj["metadata"]["annotations"] = {TRANSPORT_ANNOTATION: "overlay"}
        out.append(obj)
    return out


def vxlan_packets(ns: Netns) -> int:
    """tx + rx packets of the node's VXLAN device (0 when there is none)."""
    total = 0
    for what in ("tx_packets", "rx_packets"):
        proc = ns.run("cat", f"/sys/class/net/{DEV}/statistics/{what}", check=False)
        total += int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0
    return total


def overlay_syncs(topo: topology.Topology) -> dict[str, OverlaySync]:
    return {n: OverlaySync(OverlaySettings(), VxlanSyncer(DEV, netns=topo.nodes[n].ns.name),
                           lambda: topology.UPLINK_MTU) for n in NODES}


def apply(syncs: dict[str, OverlaySync], overlay: set[str]) -> None:
    """Every node's agent syncs its overlay against the same Node list."""
    for n, s in syncs.items():
        result = s.sync(f"node-{n}", lambda: node_list(overlay), [OVERLAY_POOL])
        assert result.errors == (), result.errors


def counters(sc: scenario.Scenario) -> dict[str, int]:
    return {n: vxlan_packets(sc.topo.nodes[n].ns) for n in NODES}


def assert_overlay_beside_routes(sc: scenario.Scenario, syncs: dict[str, OverlaySync]) -> None:
    """C on the overlay, A and B on routes: the assertions of the module docstring up to the cleanup."""
    a, b, c = (sc.topo.nodes[n] for n in "abc")
    c_pod, a_pod, b_pod = c.pods[0].ip, a.pods[1].ip, b.pods[0].ip
    before = counters(sc)
    assert sc.seen("a", 0, c_pod) == a.pods[0].ip  # NAT-less A → C
    assert sc.seen("c", 1, a_pod) == c.pods[1].ip  # NAT-less C → A
    mid = counters(sc)
    assert mid["a"] > before["a"] and mid["c"] > before["c"]  # it crossed the VXLAN devices
    assert mid["b"] == before["b"]
    assert sc.seen("a", 0, b_pod) == a.pods[0].ip  # A → B: the router, NAT-less
    after_ab = counters(sc)
    assert after_ab["a"] == mid["a"] and after_ab["b"] == mid["b"]  # no encapsulation between routed nodes
    assert sc.seen("c", 0, topology.INTERNET_HOST_IP) == c.ip  # C → internet: masqueraded to node C
    assert syncs["c"].syncer.cleanup() is True  # `routectl agent --cleanup` on C removes its device
    assert sc.seen("a", 0, c_pod, timeout=1.0) is None


@dataclass
class QuotaCloud:
    """A fake cloud whose quota is set in node routes, routectl's reconciler on it, and a reader."""

    nodes: dict[str, NodeRoutes]
    make_reconciler: Callable[[], RouteReconciler]
    set_room: Callable[[int], None]  # quota = foreign/default routes + this many node routes
    read_back: Callable[[], dict[str, str]]


def _routes(name: str, provider_id: str) -> NodeRoutes:
    return NodeRoutes(f"node-{name}", f"uid-{name}", provider_id, NODES[name].pod_cidrs,
                      created=f"2026-12-01T10:00:0{'abc'.index(name)}Z")


@contextmanager
def gce_quota() -> Iterator[QuotaCloud]:
    from routectl.sim.fake_gce import FakeGCE

    with FakeGCE(op_delay=0.0) as gce:
        nodes = {n: _routes(n, gce.add_instance("us-central1-a", f"gce-node-{n}")) for n in NODES}
        base = len(gce.routes)

        def read_back() -> dict[str, str]:
            out = {}
            for route in gce.routes_snapshot().values():
                hop = route.get("nextHopInstance") or ""
                if "/instances/gce-node-" in hop:
                    out[route["destRange"]] = hop.rsplit("/instances/gce-node-", 1)[-1]
            return out

        def reconciler() -> RouteReconciler:
            return RouteReconciler(make_driver("gce", project=gce.project, network=gce.network,
                                               cluster_name="overlay", endpoint=gce.endpoint),
                                   [scenario.CLUSTER_CIDR])

        def set_room(n: int) -> None:
            gce.routes_quota = base + n

        yield QuotaCloud(nodes, reconciler, set_room, read_back)


@contextmanager
def aws_quota() -> Iterator[QuotaCloud]:
    from routectl.sim.aws import MotoAWS

    with MotoAWS(cluster_id="overlay") as aws:
        nodes = {n: _routes(n, aws.add_node(f"aws-node-{n}")) for n in NODES}
        enis = {aws.nodes[f"aws-node-{n}"]["eni"]: n for n in NODES}
        table = aws.route_table_ids[0]
        base = aws.used(table) or 0
        ec2 = aws.client()

        def read_back() -> dict[str, str]:
            out = {}
            for t in ec2.describe_route_tables(RouteTableIds=aws.route_table_ids)["RouteTables"]:
                for route in t["Routes"]:
                    if route.get("NetworkInterfaceId") in enis and route.get("State") == "active":
                        out[route["DestinationCidrBlock"]] = enis[route["NetworkInterfaceId"]]
            return out

        def reconciler() -> RouteReconciler:  # a fresh driver reads the quota again (cached 1 h)
            driver = make_driver("aws", cluster_id="overlay", region=aws.region, endpoint_url=aws.endpoint,
                                 cluster_cidrs=[scenario.CLUSTER_CIDR], session=aws.session())
            return RouteReconciler(driver, [scenario.CLUSTER_CIDR])

        def set_room(n: int) -> None:
            aws.route_limit = base + n

        yield QuotaCloud(nodes, reconciler, set_room, read_back)


CLOUDS: dict[str, Callable[[], AbstractContextManager[QuotaCloud]]] = {"gce": gce_quota, "aws": aws_quota}


@pytest.mark.slow
@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_node_refused_by_the_full_table_falls_back_to_the_overlay(lab: Lab, cloud: str) -> None:
    with CLOUDS[cloud]() as qc:
        qc.set_room(2)
        order = [qc.nodes[n] for n in NODES]
        result = qc.make_reconciler().sync(order)
        assert result.nodes["node-c"].reason == "RouteLimitReached", result.nodes
        decisions = {n: decide(st, fallback=True, on_overlay=False, warning=reached_for(st, result.warnings))
                     for n in NODES if (st := result.nodes[f"node-{n}"])}
        assert {n for n, d in decisions.items() if d.overlay} == {"c"}
        c_status = decisions["c"].status
        assert c_status.ok and c_status.reason == REASON_ROUTE_OVERLAY
        assert "at its limit of" in c_status.message and "UDP 8472" in c_status.message
        assert decisions["c"].event is not None and decisions["c"].event[0] == EVENT_ROUTE_OVERLAY
        routes = qc.read_back()
        assert routes == {"10.244.0.0/24": "a", "10.244.1.0/24": "b"}, routes

        sc = scenario.build(lab, routes, nodes=NODES)
        start_peer_server(lab.netns, sc.topo.nodes["c"].pods[0].ns, PORT)
        syncs = overlay_syncs(sc.topo)
        apply(syncs, {"c"})
        assert_overlay_beside_routes(sc, syncs)
        apply(syncs, {"c"})  # C's agent is back: the overlay path returns

        qc.set_room(3)  # the quota is raised
        result = qc.make_reconciler().sync(order)
        assert result.nodes["node-c"].ok, result.nodes["node-c"]
        sc.topo.set_routes(qc.read_back())  # C's route exists before its annotation goes
        restored = decide(result.nodes["node-c"], fallback=True, on_overlay=True)
        assert not restored.overlay
        assert restored.event is not None and restored.event[0] == EVENT_ROUTE_RESTORED
        apply(syncs, set())
        a, c = sc.topo.nodes["a"], sc.topo.nodes["c"]
        before = counters(sc)
        assert sc.seen("a", 0, c.pods[0].ip) == a.pods[0].ip and sc.seen("c", 1, a.pods[1].ip) == c.pods[1].ip
        assert counters(sc) == before == {n: 0 for n in NODES}  # no device left: no encapsulation


def test_overlay_node_works_beside_routed_nodes(lab: Lab) -> None:
    """Static routes (no cloud): the fast variant of the proof."""
    sc = scenario.build(lab, {"10.244.0.0/24": "a", "10.244.1.0/24": "b"}, nodes=NODES)
    a, c = sc.topo.nodes["a"], sc.topo.nodes["c"]
    start_peer_server(lab.netns, c.pods[0].ns, PORT)
    syncs = overlay_syncs(sc.topo)
    assert sc.seen("a", 0, c.pods[0].ip) is None  # the router has no route for C: dead without the overlay
    apply(syncs, {"c"})
    assert_overlay_beside_routes(sc, syncs)

    # the quota is raised: C gets its route, then the controller drops the annotation
    sc.topo.set_routes({"10.244.0.0/24": "a", "10.244.1.0/24": "b", "10.244.2.0/24": "c"})
    apply(syncs, set())
    for n in NODES:
        assert DEV not in sc.topo.nodes[n].ns.ip("link").stdout
    assert sc.seen("a", 0, c.pods[0].ip) == a.pods[0].ip and sc.seen("c", 1, a.pods[1].ip) == c.pods[1].ip
