"""The dataplane scenario shared by the static-route and the cloud-route tests.

Builds the two-node VPC, installs the given router routes, runs the agent's real sync (masquerade
rules, then the CNI config file) in each node's namespace, wires the pods the way a container runtime
does (the real bridge/host-local/portmap/loopback plugins, run with the conflist the agent wrote for
that node), and checks what servers in the destinations see.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routectl.agent import cni
from routectl.agent.cnisync import CniSyncer
from routectl.agent.iptables import Iptables, Runner
from routectl.agent.main import AgentLoop
from routectl.agent.main import cleanup as agent_cleanup
from routectl.agent.sync import MasqSyncer
from routectl.constants import MASQ_CHAIN
from tests.dataplane import topology
from tests.dataplane.cni_runner import PLUGIN_DIR, CniRuntime
from tests.dataplane.netns import NetnsFactory, peer_seen, start_peer_server
from tests.dataplane.topology import NodeSpec

NODES = {"a": NodeSpec("10.0.0.10", ("10.244.0.0/24",)), "b": NodeSpec("10.0.0.11", ("10.244.1.0/24",))}
DUAL_NODES = {
    "a": NodeSpec("10.0.0.10", ("10.244.0.0/24", "fd00:10:244::/64"), "fd00:a::10"),
    "b": NodeSpec("10.0.0.11", ("10.244.1.0/24", "fd00:10:244:1::/64"), "fd00:a::11"),
}
CLUSTER_CIDR = "10.244.0.0/16"
CLUSTER6_CIDR = "fd00:10:244::/56"
PORT = 8080
HOST_PORT = 30080  # node b's hostPort for pod b1 (portmap, capabilities.portMappings)
BRIDGE = cni.DEFAULT_BRIDGE

POOL = {
    "apiVersion": "routectl.io/v1alpha1",
    "kind": "PodCIDRPool",
    "metadata": {"name": "default"},
    "spec": {"cidrs": [CLUSTER_CIDR], "masquerade": {"nonMasqueradeCIDRs": [topology.VPC_CIDR]}},
}
DUAL_POOL = {
    **POOL,
    "spec": {"cidrs": [CLUSTER_CIDR, CLUSTER6_CIDR],
             "masquerade": {"nonMasqueradeCIDRs": [topology.VPC_CIDR, topology.VPC6_CIDR]}},
}


def node_object(name: str, nodes: Mapping[str, NodeSpec] = NODES) -> dict[str, Any]:
    """The Node as the agent reads it from the API."""
    spec = nodes[name]
    addresses = [{"type": "InternalIP", "address": spec.ip}]
    if spec.ip6:
        addresses.append({"type": "InternalIP", "address": spec.ip6})
    return {"metadata": {"name": f"node-{name}"},
            "spec": {"podCIDR": spec.pod_cidrs[0], "podCIDRs": list(spec.pod_cidrs)},
            "status": {"addresses": addresses}}


@dataclass
class StaticSource:
    """The agent's NodeSource with a fixed Node and pools (no API server: the kube path has its own test)."""

    node: dict[str, Any]
    pools: list[dict[str, Any]]

    def fetch(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.node, self.pools

    def start_watches(self, trigger: Any, stop: Any) -> None:
        return None

    def stop_watches(self) -> None:
        return None


@dataclass
class Lab:
    """What a dataplane test owns: its namespaces, a temp dir, and the CNI runtimes whose pods the
    fixture DELs at the end (also on failure) before the namespaces go."""

    netns: NetnsFactory
    tmp: Path
    runtimes: list[CniRuntime] = field(default_factory=list)

    def teardown(self) -> list[str]:
        """DEL every pod still attached; the errors met."""
        return [err for rt in self.runtimes for err in rt.delete_all()]

    def leases(self) -> list[Path]:
        """host-local lease files left in any node's data dir (the bookkeeping files excluded)."""
        return [p for p in self.tmp.glob("node-*/ipam/*/*")
                if p.name != "lock" and not p.name.startswith("last_reserved_ip")]


@dataclass
class Scenario:
    """A built topology with agents applied, pods wired by CNI and servers running."""

    lab: Lab
    topo: topology.Topology
    nodes: Mapping[str, NodeSpec]
    loops: dict[str, AgentLoop]
    runtimes: dict[str, CniRuntime]

    def cni(self, node: str) -> CniSyncer:
        """The agent's CNI syncer of `node`."""
        syncer = self.loops[node].cni
        assert syncer is not None
        return syncer

    def lease_dir(self, node: str) -> Path:
        """host-local's lease directory of `node`'s network."""
        return self.lab.tmp / f"node-{node}" / "ipam" / cni.DEFAULT_NETWORK_NAME

    def add_pod(self, node: str, runtime_config: Mapping[str, Any] | None = None) -> topology.Pod:
        """A new pod on `node`: its netns (lo down), then ADD through the plugin chain."""
        n = self.topo.nodes[node]
        pod_ns = self.lab.netns(f"pod-{node}{len(self.lab.netns.created)}", lo_up=False)
        att = self.runtimes[node].add(self.cni(node).path, pod_ns, runtime_config)
        pod = topology.Pod(pod_ns, att)
        n.pods.append(pod)
        return pod

    def remove_pod(self, node: str, pod: topology.Pod) -> None:
        """DEL the pod's attachment (its netns stays until the end, as a sandbox would until removed)."""
        self.runtimes[node].delete(pod.attachment)
        self.topo.nodes[node].pods.remove(pod)

    def seen(self, client_node: str, client_pod: int, host: str, timeout: float = 2.0,
             port: int = PORT) -> str | None:
        """Source address the server at `host` saw for a connection from that pod, or None."""
        pod = self.topo.nodes[client_node].pods[client_pod]
        return peer_seen(pod.ns, host, port, timeout)


def build(lab: Lab, routes: dict[str, str], backend: str = "nft", pool: dict | None = None,
          reports: list[str] | None = None, nodes: Mapping[str, NodeSpec] = NODES) -> Scenario:
    """Topology + router routes + the agent's sync in each node namespace + pods via CNI + peer servers.

    With `pool` (default POOL) the agents run on fresh nodes against that pool; when `reports` is given
    the pool may be bad: the agents' reports are collected there instead of failing the build.
    """
    topo = topology.build(lab.netns, dict(nodes))
    topo.set_routes(routes)
    loops: dict[str, AgentLoop] = {}
    runtimes: dict[str, CniRuntime] = {}
    for name, node in topo.nodes.items():
        runner = Runner(node.ns.prefix)
        report = None if reports is None else reports.append
        conf_dir = lab.tmp / f"node-{name}" / "net.d"
        conf_dir.mkdir(parents=True)
        cni_syncer = CniSyncer(
            conf_dir=str(conf_dir), bin_dirs=[PLUGIN_DIR], runner=runner, report=report,
            settings=cni.CniSettings(ipam_data_dir=str(lab.tmp / f"node-{name}" / "ipam")))
        loop = AgentLoop(StaticSource(node_object(name, nodes), [pool or POOL]),
                         MasqSyncer(Iptables(runner=runner, backend=backend), report=report), cni=cni_syncer)
        result = loop.sync_once()
        assert (reports is not None or result.errors == ()) and result.writes == len(node.pod_cidrs), result
        assert result.cni is not None and result.cni.written and not result.cni.errors, result.cni
        assert node.ns.read_sysctl("net.ipv4.ip_forward") == "1"  # turned on by the agent
        loops[name] = loop
        runtimes[name] = CniRuntime(node.ns)
        lab.runtimes.append(runtimes[name])
    sc = Scenario(lab, topo, nodes, loops, runtimes)
    for name in topo.nodes:
        for i in range(2):
            # pod b1 publishes its server on node b's HOST_PORT, as a pod with a hostPort would
            mapping = {"portMappings": [{"hostPort": HOST_PORT, "containerPort": PORT, "protocol": "tcp"}]}
            sc.add_pod(name, mapping if (name, i) == ("b", 0) else None)
    b, a = topo.nodes["b"], topo.nodes["a"]
    for ns in (b.pods[0].ns, b.ns, topo.internet, a.pods[1].ns):
        start_peer_server(lab.netns, ns, PORT)
        if any(spec.ip6 for spec in nodes.values()):
            start_peer_server(lab.netns, ns, PORT, family=6)
    return sc


def _link(ns: Any, dev: str) -> dict[str, Any]:
    return json.loads(ns.ip("-j", "link", "show", "dev", dev).stdout)[0]


def assert_wired_by_the_plugins(sc: Scenario) -> None:
    """Each pod is what bridge + host-local + loopback made from the agent's file: addresses in the
    node's order from its CIDRs, the node's bridge as gateway, the uplink's MTU, `lo` up."""
    for name, node in sc.topo.nodes.items():
        conf = json.loads(sc.cni(name).path.read_text())
        assert conf["plugins"][0]["mtu"] == topology.UPLINK_MTU, "default MTU = the node's primary interface"
        nets = [ipaddress.ip_network(c) for c in node.pod_cidrs]
        bridge_addrs = node.ns.ip("-o", "addr", "show", "dev", BRIDGE).stdout
        for net in nets:
            assert f"{net.network_address + 1}/{net.prefixlen}" in bridge_addrs, "gateway on the bridge"
        for i, pod in enumerate(node.pods):
            for net in nets:
                got = pod.attachment.addresses(net.version)
                assert got == [str(net.network_address + 2 + i)], (name, i, got)
            eth0 = _link(pod.ns, "eth0")
            assert eth0["mtu"] == topology.UPLINK_MTU and "UP" in eth0["flags"]
            assert "UP" in _link(pod.ns, "lo")["flags"], "the loopback plugin brings lo up"
            host_veth = pod.attachment.host_interfaces[-1]
            assert _link(node.ns, host_veth).get("master") == BRIDGE
            assert sc.lease_dir(name).joinpath(pod.ip).exists()


def assert_nat_less_and_masqueraded(sc: Scenario) -> None:
    """The seeds' promise: pod→pod and pod→node keep the pod IP; pod→internet shows the node IP."""
    a, b = sc.topo.nodes["a"], sc.topo.nodes["b"]
    a1, b1 = a.pods[0], b.pods[0]
    assert sc.seen("a", 0, b1.ip) == a1.ip, "pod → pod on the other node must keep the pod's source IP"
    assert sc.seen("b", 1, a.pods[1].ip) == b.pods[1].ip, "and the other way round"
    assert sc.seen("a", 0, b.ip) == a1.ip, "pod → other node's IP must keep the pod's source IP"
    assert sc.seen("a", 0, topology.INTERNET_HOST_IP) == a.ip, "pod → internet must be masqueraded to node A"
    assert sc.seen("b", 0, topology.INTERNET_HOST_IP) == b.ip, "pod → internet must be masqueraded to node B"


def wait_ipv6_settled(sc: Scenario, timeout: float = 10.0) -> None:
    """Wait until no IPv6 address in the nodes' and pods' namespaces is still tentative: the bridge's
    gateway address goes through duplicate address detection (about a second) after the first pod is
    wired, and until then the kernel does not forward through it, so a first probe could be lost."""
    nodes = list(sc.topo.nodes.values())
    namespaces = [n.ns for n in nodes] + [p.ns for n in nodes for p in n.pods]
    deadline = time.monotonic() + timeout
    while True:
        tentative = {ns.name: out for ns in namespaces
                     if (out := ns.ip("-6", "addr", "show", "tentative").stdout.strip())}
        if not tentative:
            return
        assert time.monotonic() < deadline, f"IPv6 addresses still tentative after {timeout}s: {tentative}"
        time.sleep(0.1)


def assert_ipv6_nat_less_and_masqueraded(sc: Scenario) -> None:
    """The same promise over IPv6 on dual-stack nodes."""
    a, b = sc.topo.nodes["a"], sc.topo.nodes["b"]
    a1, b1 = a.pods[0], b.pods[0]
    wait_ipv6_settled(sc)
    assert sc.seen("a", 0, b1.ip6) == a1.ip6, "IPv6 pod → pod must keep the pod's source"
    assert sc.seen("b", 1, a.pods[1].ip6) == b.pods[1].ip6
    assert sc.seen("a", 0, b.ip6 or "") == a1.ip6, "IPv6 pod → node must keep the pod's source"
    assert sc.seen("a", 0, topology.INTERNET_HOST6_IP) == a.ip6, "IPv6 pod → internet masqueraded to node A"


def assert_host_port(sc: Scenario) -> None:
    """portmap got the pod's portMappings through the conflist's capability: node b's HOST_PORT leads to
    pod b1, from the internet and from a pod on node a (whose source stays its own)."""
    b = sc.topo.nodes["b"]
    assert peer_seen(sc.topo.internet, b.ip, HOST_PORT) == topology.INTERNET_HOST_IP
    assert sc.seen("a", 0, b.ip, port=HOST_PORT) == sc.topo.nodes["a"].pods[0].ip


def assert_del_releases_and_next_address(sc: Scenario, node: str = "a") -> None:
    """DEL removes the pod's interfaces and its leases; the next pod gets the next address."""
    pod = sc.add_pod(node)
    families = [ipaddress.ip_network(c).version for c in sc.topo.nodes[node].pod_cidrs]
    addrs = [pod.attachment.addresses(f)[0] for f in families]
    leases = [sc.lease_dir(node) / a for a in addrs]
    host_veth = pod.attachment.host_interfaces[-1]
    assert all(p.exists() for p in leases) and _link(sc.topo.nodes[node].ns, host_veth)
    sc.remove_pod(node, pod)
    assert not any(p.exists() for p in leases), "DEL must release the address (host-local lease file gone)"
    assert sc.topo.nodes[node].ns.ip("link", "show", "dev", host_veth, check=False).returncode != 0
    assert pod.ns.ip("link", "show", "dev", "eth0", check=False).returncode != 0, "pod's eth0 gone"
    second = sc.add_pod(node)
    for family, addr in zip(families, addrs, strict=True):
        assert second.attachment.addresses(family) == [str(ipaddress.ip_address(addr) + 1)]


def assert_route_is_what_makes_it_work(sc: Scenario, remove_route_b: Callable[[], None]) -> None:
    """Without node B's route (removed by `remove_route_b`), pod A → pod B fails; internet still works."""
    b1 = sc.topo.nodes["b"].pods[0]
    remove_route_b()
    assert sc.seen("a", 0, b1.ip, timeout=1.0) is None, "pod → pod on B must fail without B's route"
    assert sc.seen("a", 0, topology.INTERNET_HOST_IP) == sc.topo.nodes["a"].ip


def assert_cleanup(sc: Scenario) -> None:
    """`routectl agent --cleanup` code removes every routectl rule and the CNI file; then internet egress
    has no way back."""
    for name, node in sc.topo.nodes.items():
        removed = agent_cleanup(Runner(node.ns.prefix))
        assert removed == ["IPv4 (nft)"] or removed == ["IPv4 (legacy)"], removed
        for tool in ("iptables-nft-save", "iptables-legacy-save",
                     "ip6tables-nft-save", "ip6tables-legacy-save"):
            assert MASQ_CHAIN not in node.ns.run(tool).stdout
        assert sc.cni(name).cleanup() is True and not sc.cni(name).path.exists()
    # the internet host has no route to pod CIDRs: without masquerade the reply cannot come back
    assert sc.seen("a", 0, topology.INTERNET_HOST_IP, timeout=1.0) is None


def pod_routes(nodes: Mapping[str, NodeSpec]) -> Iterator[tuple[str, str]]:
    """(pod CIDR, node name) for every CIDR of every node: the routes a VPC router needs."""
    for name, spec in nodes.items():
        for cidr in spec.pod_cidrs:
            yield cidr, name
