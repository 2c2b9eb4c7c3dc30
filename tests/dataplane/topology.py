"""A two-node "VPC" in network namespaces: router, nodes with a bridge and pods, and an internet host.

```
 pod a1 ─┐                                             ┌─ pod b1
 pod a2 ─┴ cbr0 [node a 10.0.0.10] ─┐       ┌─ [node b 10.0.0.11] cbr0 ┬─ pod b2
                                    vpc0 bridge [router 10.0.0.1] ─ 203.0.113.1 ── [internet 203.0.113.10]
```
The router knows pod CIDRs only through the routes handed to `set_routes` (in the cloud tests: read
back from the fake cloud's route table). The internet host can reach node addresses (standing in for
the cloud's public IP mapping) but has no route to any pod CIDR, so pod traffic only gets an answer
from it when masqueraded to the node's IP. Node forwarding is left off: the agent must turn it on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tests.dataplane.netns import Netns, NetnsFactory, veth

VPC_CIDR = "10.0.0.0/24"
ROUTER_VPC_IP = "10.0.0.1"
INTERNET_CIDR = "203.0.113.0/24"
ROUTER_INTERNET_IP = "203.0.113.1"
INTERNET_HOST_IP = "203.0.113.10"


@dataclass
class Pod:
    """A pod: its namespace and IP."""

    ns: Netns
    ip: str


@dataclass
class Node:
    """A node: its namespace, VPC IP, pod CIDR and pods."""

    name: str
    ns: Netns
    ip: str
    pod_cidr: str
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Topology:
    """The whole VPC; `set_routes` replaces the router's pod-CIDR routes."""

    router: Netns
    internet: Netns
    nodes: dict[str, Node]
    installed_routes: dict[str, str] = field(default_factory=dict)

    def set_routes(self, routes: dict[str, str]) -> None:
        """Make the router's pod routes exactly {destination CIDR: node name} (via that node's VPC IP)."""
        for dest in list(self.installed_routes):
            if dest not in routes:
                self.router.ip("route", "del", dest)
                del self.installed_routes[dest]
        for dest, node in routes.items():
            if node not in self.nodes:
                raise ValueError(f"route {dest} points at unknown node {node!r}")
            self.router.ip("route", "replace", dest, "via", self.nodes[node].ip, "dev", "vpc0")
            self.installed_routes[dest] = node


def build(factory: NetnsFactory, nodes: dict[str, tuple[str, str]], pods_per_node: int = 2) -> Topology:
    """Create router, internet host and `nodes` ({name: (VPC IP, pod CIDR)}), each with pods."""
    router = factory("router")
    router.ip("link", "add", "vpc0", "type", "bridge")
    router.ip("addr", "add", f"{ROUTER_VPC_IP}/24", "dev", "vpc0")
    router.ip("link", "set", "vpc0", "up")
    router.sysctl("net.ipv4.ip_forward", "1")
    for key in ("net.ipv4.conf.all.send_redirects", "net.ipv4.conf.vpc0.send_redirects"):
        router.sysctl(key, "0")  # a real VPC router does not redirect; keep every hop through it

    internet = factory("inet")
    veth(router, "inet0", internet, "eth0")
    router.ip("addr", "add", f"{ROUTER_INTERNET_IP}/24", "dev", "inet0")
    internet.ip("addr", "add", f"{INTERNET_HOST_IP}/24", "dev", "eth0")
    internet.ip("route", "add", VPC_CIDR, "via", ROUTER_INTERNET_IP)  # node IPs only, never pod CIDRs

    built: dict[str, Node] = {}
    for name, (node_ip, pod_cidr) in nodes.items():
        ns = factory(f"node-{name}")
        veth(router, f"vpc-{name}", ns, "eth0")
        router.ip("link", "set", f"vpc-{name}", "master", "vpc0")
        ns.ip("addr", "add", f"{node_ip}/24", "dev", "eth0")
        ns.ip("route", "add", "default", "via", ROUTER_VPC_IP)
        net = ipaddress.ip_network(pod_cidr)
        hosts = net.hosts()
        gateway = str(next(hosts))
        ns.ip("link", "add", "cbr0", "type", "bridge")
        ns.ip("addr", "add", f"{gateway}/{net.prefixlen}", "dev", "cbr0")
        ns.ip("link", "set", "cbr0", "up")
        node = Node(name, ns, node_ip, pod_cidr)
        for i in range(1, pods_per_node + 1):
            pod_ns = factory(f"pod-{name}{i}")
            pod_ip = str(next(hosts))
            veth(ns, f"veth{i}", pod_ns, "eth0")
            ns.ip("link", "set", f"veth{i}", "master", "cbr0")
            pod_ns.ip("addr", "add", f"{pod_ip}/{net.prefixlen}", "dev", "eth0")
            pod_ns.ip("route", "add", "default", "via", gateway)
            node.pods.append(Pod(pod_ns, pod_ip))
        built[name] = node
    return Topology(router, internet, built)
