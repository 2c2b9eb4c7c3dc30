"""The dataplane scenario shared by the static-route and the cloud-route tests.

Builds the two-node VPC, installs the given router routes, runs the agent's real sync code in each
node's namespace, and checks what servers in the destinations see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from routectl.agent.iptables import Iptables, Runner
from routectl.agent.main import cleanup as agent_cleanup
from routectl.agent.sync import MasqSyncer, compute_desired
from routectl.constants import MASQ_CHAIN
from tests.dataplane import topology
from tests.dataplane.netns import NetnsFactory, peer_seen, start_peer_server

NODES = {"a": ("10.0.0.10", "10.244.0.0/24"), "b": ("10.0.0.11", "10.244.1.0/24")}
CLUSTER_CIDR = "10.244.0.0/16"
PORT = 8080

POOL = {
    "apiVersion": "routectl.io/v1alpha1",
    "kind": "PodCIDRPool",
    "metadata": {"name": "default"},
    "spec": {"cidrs": [CLUSTER_CIDR], "masquerade": {"nonMasqueradeCIDRs": [topology.VPC_CIDR]}},
}


def node_object(name: str) -> dict:
    """The Node as the agent reads it from the API."""
    ip, cidr = NODES[name]
    return {"metadata": {"name": f"node-{name}"}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


@dataclass
class Scenario:
    """A built topology with agents applied and servers running."""

    topo: topology.Topology
    syncers: dict[str, MasqSyncer]

    def seen(self, client_node: str, client_pod: int, host: str, timeout: float = 2.0) -> str | None:
        """Source address the server at `host` saw for a connection from that pod, or None."""
        pod = self.topo.nodes[client_node].pods[client_pod]
        return peer_seen(pod.ns, host, PORT, timeout)


def build(netns: NetnsFactory, routes: dict[str, str], backend: str = "nft", pool: dict | None = None,
          reports: list[str] | None = None) -> Scenario:
    """Topology + router routes + the agent's sync in each node namespace + peer servers.

    With `pool` (default POOL) the agents run on fresh nodes against that pool; when `reports` is given
    the pool may be bad: the agents' reports are collected there instead of failing the build.
    """
    topo = topology.build(netns, NODES)
    topo.set_routes(routes)
    syncers = {}
    for name, node in topo.nodes.items():
        syncer = MasqSyncer(Iptables(runner=Runner(node.ns.prefix), backend=backend),
                            report=None if reports is None else reports.append)
        result = syncer.sync(compute_desired(node_object(name), [pool or POOL]))
        assert (reports is not None or result.errors == ()) and result.writes == 1, result
        assert node.ns.read_sysctl("net.ipv4.ip_forward") == "1"  # turned on by the agent
        syncers[name] = syncer
    for ns in (topo.nodes["b"].pods[0].ns, topo.nodes["b"].ns, topo.internet, topo.nodes["a"].pods[1].ns):
        start_peer_server(netns, ns, PORT)
    return Scenario(topo, syncers)


def assert_nat_less_and_masqueraded(sc: Scenario) -> None:
    """The seeds' promise: pod→pod and pod→node keep the pod IP; pod→internet shows the node IP."""
    a, b = sc.topo.nodes["a"], sc.topo.nodes["b"]
    a1, b1 = a.pods[0], b.pods[0]
    assert sc.seen("a", 0, b1.ip) == a1.ip, "pod → pod on the other node must keep the pod's source IP"
    assert sc.seen("b", 1, a.pods[1].ip) == b.pods[1].ip, "and the other way round"
    assert sc.seen("a", 0, b.ip) == a1.ip, "pod → other node's IP must keep the pod's source IP"
    assert sc.seen("a", 0, topology.INTERNET_HOST_IP) == a.ip, "pod → internet must be masqueraded to node A"
    assert sc.seen("b", 0, topology.INTERNET_HOST_IP) == b.ip, "pod → internet must be masqueraded to node B"


def assert_route_is_what_makes_it_work(sc: Scenario, remove_route_b: Callable[[], None]) -> None:
    """Without node B's route (removed by `remove_route_b`), pod A → pod B fails; internet still works."""
    b1 = sc.topo.nodes["b"].pods[0]
    remove_route_b()
    assert sc.seen("a", 0, b1.ip, timeout=1.0) is None, "pod → pod on B must fail without B's route"
    assert sc.seen("a", 0, topology.INTERNET_HOST_IP) == sc.topo.nodes["a"].ip


def assert_cleanup(sc: Scenario) -> None:
    """`routectl agent --cleanup` code removes every routectl rule; then internet egress has no way back."""
    for node in sc.topo.nodes.values():
        removed = agent_cleanup(Runner(node.ns.prefix))
        assert removed == ["IPv4 (nft)"] or removed == ["IPv4 (legacy)"], removed
        for tool in ("iptables-nft-save", "iptables-legacy-save",
                     "ip6tables-nft-save", "ip6tables-legacy-save"):
            assert MASQ_CHAIN not in node.ns.run(tool).stdout
    # the internet host has no route to pod CIDRs: without masquerade the reply cannot come back
    assert sc.seen("a", 0, topology.INTERNET_HOST_IP, timeout=1.0) is None
