"""A two-node "VPC" in network namespaces: router, nodes and an internet host; pods come from CNI.

```
 pod a1 ─┐                                               ┌─ pod b1
 pod a2 ─┴ routectl0 [node a 10.0.0.10] ─┐     ┌─ [node b 10.0.0.11] routectl0 ┴─ pod b2
                                   vpc0 bridge [router 10.0.0.1] ─ 203.0.113.1 ── [internet 203.0.113.10]
```
The nodes come bare: an uplink `eth0` (MTU 1460, GCE's, so the pods' MTU visibly comes from it) and a
default route. The bridge, the pods' veths, addresses and routes are made by the real CNI plugins
from the conflist the agent writes (tests/dataplane/cni_runner.py). The router knows pod CIDRs only
through the routes handed to `set_routes` (in the cloud tests: read back from the fake cloud's route
table). The internet host can reach node addresses (standing in for the cloud's public IP mapping)
but has no route to any pod CIDR, so pod traffic only gets an answer from it when masqueraded to the
node's IP. Node forwarding is left off: the agent must turn it on. With IPv6 node addresses the same
holds for IPv6 (VPC fd00:a::/64, internet 2001:db8:ff::/64).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.dataplane.netns import Netns, NetnsFactory, veth

if TYPE_CHECKING:
    from tests.dataplane.cni_runner import Attachment

VPC_CIDR = "10.0.0.0/24"
ROUTER_VPC_IP = "10.0.0.1"
INTERNET_CIDR = "203.0.113.0/24"
ROUTER_INTERNET_IP = "203.0.113.1"
INTERNET_HOST_IP = "203.0.113.10"
VPC6_CIDR = "fd00:a::/64"
ROUTER_VPC6_IP = "fd00:a::1"
ROUTER_INTERNET6_IP = "2001:db8:ff::1"
INTERNET_HOST6_IP = "2001:db8:ff::10"
UPLINK_MTU = 1460


@dataclass(frozen=True)
class NodeSpec:
    """A node to build: VPC address(es) and pod CIDR(s)."""

    ip: str
    pod_cidrs: tuple[str, ...]
    ip6: str | None = None


@dataclass
class Pod:
    """A pod: its namespace, the CNI attachment that wired it and its addresses."""

    ns: Netns
    attachment: Attachment

    @property
    def ip(self) -> str:
        """The pod's IPv4 address, as the plugins assigned it."""
        return self.attachment.addresses(4)[0]

    @property
    def ip6(self) -> str:
        """The pod's IPv6 address, as the plugins assigned it."""
        return self.attachment.addresses(6)[0]


@dataclass
class Node:
    """A node: its namespace, VPC address(es), pod CIDR(s) and pods."""

    name: str
    ns: Netns
    ip: str
    pod_cidrs: tuple[str, ...]
    ip6: str | None = None
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
            via = self.nodes[node].ip6 if ipaddress.ip_network(dest).version == 6 else self.nodes[node].ip
            if via is None:
                raise ValueError(f"route {dest}: node {node!r} has no IPv6 address")
            self.router.ip("route", "replace", dest, "via", via, "dev", "vpc0")
            self.installed_routes[dest] = node


def build(factory: NetnsFactory, nodes: dict[str, NodeSpec]) -> Topology:
    """Create router, internet host and bare `nodes` (uplink, address, default route; no bridge, no pods)."""
    dual = any(spec.ip6 for spec in nodes.values())
    router = factory("router")
    router.ip("link", "add", "vpc0", "type", "bridge")
    router.ip("link", "set", "vpc0", "mtu", str(UPLINK_MTU))
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
    if dual:
        router.sysctl("net.ipv6.conf.all.forwarding", "1")
        router.ip("-6", "addr", "add", f"{ROUTER_VPC6_IP}/64", "dev", "vpc0", "nodad")
        router.ip("-6", "addr", "add", f"{ROUTER_INTERNET6_IP}/64", "dev", "inet0", "nodad")
        internet.ip("-6", "addr", "add", f"{INTERNET_HOST6_IP}/64", "dev", "eth0", "nodad")
        internet.ip("-6", "route", "add", VPC6_CIDR, "via", ROUTER_INTERNET6_IP)

    built: dict[str, Node] = {}
    for name, spec in nodes.items():
        ns = factory(f"node-{name}")
        veth(router, f"vpc-{name}", ns, "eth0")
        router.ip("link", "set", f"vpc-{name}", "mtu", str(UPLINK_MTU))
        router.ip("link", "set", f"vpc-{name}", "master", "vpc0")
        ns.ip("link", "set", "eth0", "mtu", str(UPLINK_MTU))
        ns.ip("addr", "add", f"{spec.ip}/24", "dev", "eth0")
        ns.ip("route", "add", "default", "via", ROUTER_VPC_IP)
        if spec.ip6:
            ns.ip("-6", "addr", "add", f"{spec.ip6}/64", "dev", "eth0", "nodad")
            ns.ip("-6", "route", "add", "default", "via", ROUTER_VPC6_IP)
        built[name] = Node(name, ns, spec.ip, spec.pod_cidrs, spec.ip6)
    return Topology(router, internet, built)
