"""The VXLAN fallback carries real pod traffic: three nodes, the router has routes for A and B only (the
table is full), C is on the overlay. Pods are wired by the real CNI plugins (tests/dataplane/scenario.py).

Asserts: pod A ↔ pod C keeps both addresses and crosses the VXLAN devices (their counters move); pod A →
pod B goes through the router and the VXLAN counters stay still; pod C → internet is masqueraded to node
C's IP; after the agent's --cleanup on C, A → C fails; once C has a route and its annotation is gone,
A ↔ C works without encapsulation.

Not yet here (see the note of issue 13): the controller deciding C's fallback against a fake cloud quota.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from routectl.agent.overlay import OverlaySettings
from routectl.agent.vxlan import OverlaySync, VxlanSyncer
from routectl.constants import TRANSPORT_ANNOTATION
from tests.dataplane import scenario, topology
from tests.dataplane.netns import Netns, NetnsFactory, start_peer_server
from tests.dataplane.scenario import PORT, Lab
from tests.dataplane.test_overlay_apply import vxns  # noqa: F401  (fixture: own netns prefix)
from tests.dataplane.topology import NodeSpec

pytestmark = pytest.mark.dataplane

NODES = {**scenario.NODES, "c": NodeSpec("10.0.0.12", ("10.244.2.0/24",))}
DEV = "routectl.vxlan"


@pytest.fixture
def vxlab(vxns: NetnsFactory, tmp_path: Path) -> Iterator[Lab]:  # noqa: F811
    lab = Lab(vxns, tmp_path)
    try:
        yield lab
    finally:
        errors = lab.teardown()
    assert not errors, errors


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


def test_overlay_node_works_beside_routed_nodes(vxlab: Lab) -> None:
    sc = scenario.build(vxlab, {"10.244.0.0/24": "a", "10.244.1.0/24": "b"}, nodes=NODES)
    topo = sc.topo
    a, b, c = topo.nodes["a"], topo.nodes["b"], topo.nodes["c"]
    start_peer_server(vxlab.netns, c.pods[0].ns, PORT)
    syncs = {n: OverlaySync(OverlaySettings(), VxlanSyncer(DEV, netns=topo.nodes[n].ns.name),
                            lambda: topology.UPLINK_MTU) for n in NODES}

    def apply(overlay: set[str]) -> None:
        for n, s in syncs.items():
            result = s.sync(f"node-{n}", node_list(overlay))
            assert result.errors == (), result.errors

    c_pod, a_pod, b_pod = c.pods[0].ip, a.pods[1].ip, b.pods[0].ip
    assert sc.seen("a", 0, c_pod) is None  # the router has no route for C: dead without the overlay

    apply({"c"})
    before = {n: vxlan_packets(topo.nodes[n].ns) for n in NODES}
    assert sc.seen("a", 0, c_pod) == a.pods[0].ip  # NAT-less A → C
    assert sc.seen("c", 1, a_pod) == c.pods[1].ip  # NAT-less C → A
    mid = {n: vxlan_packets(topo.nodes[n].ns) for n in NODES}
    assert mid["a"] > before["a"] and mid["c"] > before["c"]  # it crossed the VXLAN devices
    assert mid["b"] == before["b"]

    assert sc.seen("a", 0, b_pod) == a.pods[0].ip  # A → B: the router, NAT-less
    after_ab = {n: vxlan_packets(topo.nodes[n].ns) for n in NODES}
    assert after_ab["a"] == mid["a"] and after_ab["b"] == mid["b"]  # no encapsulation between routed nodes

    assert sc.seen("c", 0, topology.INTERNET_HOST_IP) == c.ip  # C → internet: masqueraded to node C

    assert syncs["c"].syncer.cleanup() is True  # `routectl agent --cleanup` on C removes its device
    assert sc.seen("a", 0, c_pod, timeout=1.0) is None

    # the quota is raised: C gets its route, then the controller drops the annotation
    topo.set_routes({"10.244.0.0/24": "a", "10.244.1.0/24": "b", "10.244.2.0/24": "c"})
    apply(set())
    for n in NODES:
        assert DEV not in topo.nodes[n].ns.ip("link").stdout
    assert sc.seen("a", 0, c_pod) == a.pods[0].ip and sc.seen("c", 1, a_pod) == c.pods[1].ip
