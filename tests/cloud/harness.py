"""One harness per cloud (fake GCE server / moto server) so the behavioural suite is written once.

Each harness builds the real driver (google-cloud-compute or boto3 over HTTP on 127.0.0.1) and inspects
the cloud's state server-side, so assertions never trust the driver's own view.
"""

from __future__ import annotations

import itertools
from typing import Any

from routectl.cloud.aws import AWSRouteDriver
from routectl.cloud.factory import make_driver
from routectl.cloud.gce import GCERouteDriver
from routectl.cloud.reconcile import RouteReconciler
from routectl.constants import ROUTE_DESCRIPTION_MARKER
from routectl.routes.model import NodeRoutes
from routectl.sim.aws import MotoAWS
from routectl.sim.fake_gce import FakeGCE
from routectl.sim.faults import FaultPlan

CLUSTER = "c1"
CLUSTER_CIDRS = ["10.244.0.0/16", "fd00:10:244::/56"]
FAST = {"rate": 1000.0, "burst": 1000, "concurrency": 8}
SEED = 1  # the fakes' random choices (operation names, random faults) repeat run after run


class GCEHarness:
    """Fake GCE server + GCERouteDriver."""

    cloud = "gce"
    zone = "us-central1-a"
    can_fix_prerequisite = False
    tables_per_route = 1

    def __init__(self, **fake_kw: Any) -> None:
        fake_kw.setdefault("op_delay", 0.005)
        fake_kw.setdefault("seed", SEED)
        self.fake = FakeGCE("sim-project", "default", **fake_kw).start()
        self._uids = itertools.count(1)

    def close(self) -> None:
        self.fake.stop()

    def driver(self, **kw: Any) -> GCERouteDriver:
        settings = dict(FAST, **kw)
        return make_driver("gce", project="sim-project", network="default", cluster_name=CLUSTER,
                           endpoint=self.fake.endpoint, **settings)  # type: ignore[return-value]

    def reconciler(self, **kw: Any) -> RouteReconciler:
        return RouteReconciler(self.driver(**kw), CLUSTER_CIDRS, concurrency=8)

    def add_node(self, name: str, cidrs: tuple[str, ...], *, prereq_ok: bool = True) -> NodeRoutes:
        pid = self.fake.add_instance(self.zone, name, can_ip_forward=prereq_ok)
        return NodeRoutes(name, f"0000{next(self._uids):04d}-aaaa-bbbb-cccc-{name:0>12}"[:36], pid, cidrs)

    def move_node(self, node: NodeRoutes, new_instance: str) -> NodeRoutes:
        """The node's next hop changes (same uid and CIDR, another instance)."""
        pid = self.fake.add_instance(self.zone, new_instance)
        return NodeRoutes(node.name, node.uid, pid, node.pod_cidrs)

    def missing_instance_pid(self) -> str:
        return f"gce://sim-project/{self.zone}/does-not-exist"

    def kill_instance(self, node: NodeRoutes) -> None:
        """The node's instance is deleted (GCE keeps its routes, still active)."""
        self.fake.remove_instance(self.zone, node.provider_id.rsplit("/", 1)[1])

    def target_of(self, node: NodeRoutes) -> str:
        return f"projects/sim-project/zones/{self.zone}/instances/{node.provider_id.rsplit('/', 1)[1]}"

    def routes_to(self) -> dict[str, set[str]]:
        """destination -> set of next hops of OUR routes (name + marker), straight from the server."""
        out: dict[str, set[str]] = {}
        for r in self.fake.routes_snapshot().values():
            ours = r.get("description") == f"{ROUTE_DESCRIPTION_MARKER} cluster={CLUSTER}"
            if ours and r["network"].endswith("/global/networks/default"):
                hop = r.get("nextHopInstance", "")
                out.setdefault(r["destRange"], set()).add(hop[hop.index("projects/"):])
        return out

    def all_routes(self) -> dict[str, Any]:
        return self.fake.routes_snapshot()

    def add_foreign_routes(self) -> set[str]:
        """Foreign routes: inside the cluster CIDR without our marker; our prefix with another cluster's
        marker; our name+marker in another network; a default gateway route. Returns their names."""
        self.fake.add_instance(self.zone, "vpn-box")
        hop = f"projects/sim-project/zones/{self.zone}/instances/vpn-box"
        self.fake.add_foreign_route("vpn-10-244-200", "10.244.200.0/24", next_hop_instance=hop)
        self.fake.add_foreign_route("rc-c1-11111111-2222-3333-4444-555555555555", "10.244.201.0/24",
                                    next_hop_instance=hop,
                                    description=f"{ROUTE_DESCRIPTION_MARKER} cluster=c2")
        self.fake.add_foreign_route("rc-c1-99999999-2222-3333-4444-555555555555", "10.244.202.0/24",
                                    next_hop_instance=hop, network="other-net",
                                    description=f"{ROUTE_DESCRIPTION_MARKER} cluster={CLUSTER}")
        self.fake.add_foreign_route("default-internet", "0.0.0.0/0",
                                    next_hop_gateway="global/gateways/default")
        self.fake.add_foreign_route("vpn-10-244-16-20", "10.244.16.0/20", next_hop_instance=hop)
        return {"vpn-10-244-200", "rc-c1-11111111-2222-3333-4444-555555555555",
                "rc-c1-99999999-2222-3333-4444-555555555555", "default-internet", "vpn-10-244-16-20"}

    def foreign_snapshot(self, names: set[str]) -> dict[str, Any]:
        snap = self.fake.routes_snapshot()
        return {n: snap.get(n) for n in names}

    def set_limit(self, routes: int) -> None:
        self.fake.routes_quota = routes

    def used(self) -> int:
        return len(self.fake.routes)

    learned_text = "limit learned from GCE"
    quota_permission = "cloudquotas.quotas.get"

    def deny_quota(self, real_limit: int) -> None:
        """The quota cannot be read (Cloud Quotas denied, no project ROUTES metric); the network still
        holds `real_limit` static routes."""
        self.fake.quotas_api_denied = True
        self.fake.routes_quota = None
        self.fake.static_routes_quota = real_limit

    def fill(self, count: int) -> None:
        """`count` foreign static routes in our network (to the default gateway), stored server-side."""
        with self.fake._lock:
            for i in range(count):
                self.fake._store_route({"name": f"other-{i}", "destRange": f"172.16.{i // 256}.{i % 256}/32",
                                        "network": self.fake.network_url(),
                                        "nextHopGateway": "global/gateways/default-internet-gateway"})

    def create_attempts(self) -> int:
        return self.fake.calls("compute.routes.insert")

    def mutating_calls(self) -> int:
        return self.fake.calls("compute.routes.insert") + self.fake.calls("compute.routes.delete")

    def list_calls(self) -> int:
        return self.fake.calls("compute.routes.list")

    def reset_log(self) -> None:
        self.fake.reset_log()

    def prerequisite_ok(self, node: NodeRoutes) -> bool:
        return bool(self.fake.instances[(self.zone, node.provider_id.rsplit("/", 1)[1])]["canIpForward"])

    def faults(self, *, throttle_every: int = 0, error_every: int = 0) -> None:
        """Count-based faults (deterministic whatever the CPU load): see routectl.sim.faults."""
        self.fake.faults = FaultPlan(throttle_every=throttle_every, error_every=error_every, seed=SEED)

    def fault_counts(self) -> tuple[int, int]:
        return self.fake.throttled, self.fake.injected_errors

    def applied_then_failed(self) -> int:
        return self.fake.faults.applied_then_failed


class AWSHarness:
    """moto server (with EC2's limits added) + AWSRouteDriver, two AZ route tables."""

    cloud = "aws"
    can_fix_prerequisite = True
    tables_per_route = 2

    def __init__(self, **moto_kw: Any) -> None:
        moto_kw.setdefault("azs", ("us-east-1a", "us-east-1b"))
        moto_kw.setdefault("seed", SEED)
        self.sim = MotoAWS(CLUSTER, "us-east-1", **moto_kw).start()
        self._uids = itertools.count(1)

    def close(self) -> None:
        self.sim.stop()

    def driver(self, **kw: Any) -> AWSRouteDriver:
        settings = dict(FAST, **kw)
        return make_driver("aws", cluster_id=CLUSTER, region="us-east-1", cluster_cidrs=CLUSTER_CIDRS,
                           endpoint_url=self.sim.endpoint, session=self.sim.session(),
                           **settings)  # type: ignore[return-value]

    def reconciler(self, **kw: Any) -> RouteReconciler:
        return RouteReconciler(self.driver(**kw), CLUSTER_CIDRS, concurrency=8)

    def add_node(self, name: str, cidrs: tuple[str, ...], *, prereq_ok: bool = True) -> NodeRoutes:
        pid = self.sim.add_node(name, source_dest_check=not prereq_ok, extra_enis=1)
        self.sim.reset_log()
        return NodeRoutes(name, f"uid-{next(self._uids)}", pid, cidrs)

    def move_node(self, node: NodeRoutes, new_instance: str) -> NodeRoutes:
        pid = self.sim.add_node(new_instance, source_dest_check=False)
        self.sim.reset_log()
        return NodeRoutes(node.name, node.uid, pid, node.pod_cidrs)

    def missing_instance_pid(self) -> str:
        return "aws:///us-east-1a/i-0123456789abcdef0"

    def kill_instance(self, node: NodeRoutes) -> None:
        """The node's instance is terminated: routes to its ENI become blackholes (as on EC2)."""
        self.sim.terminate_node(node.name)

    def target_of(self, node: NodeRoutes) -> str:
        iid = node.provider_id.rsplit("/", 1)[1]
        return next(n["eni"] for n in self.sim.nodes.values() if n["instance"] == iid)

    def routes_to(self) -> dict[str, set[str]]:
        """destination -> next hops of node-block routes (/24, /64: the pools' node masks) inside the
        cluster CIDRs in any of our tables (server state)."""
        from routectl.routes.model import inside_any, parse_pools

        pools = parse_pools(CLUSTER_CIDRS)
        out: dict[str, set[str]] = {}
        for t in self.sim.route_table_ids:
            for dest, r in self.sim.routes(t).items():
                node_block = dest.endswith(("/24", "/64"))
                if node_block and inside_any(dest, pools) and str(r["target"]).startswith(("eni-", "i-")):
                    out.setdefault(dest, set()).add(str(r["target"]))
        return out

    def per_table_routes(self) -> dict[str, dict[str, Any]]:
        return {t: self.sim.routes(t) for t in self.sim.route_table_ids}

    def all_routes(self) -> dict[str, Any]:
        return {f"{t}:{d}": r for t in self.sim.route_table_ids for d, r in self.sim.routes(t).items()}

    def add_foreign_routes(self) -> set[str]:
        """Foreign: a cluster-CIDR route to the IGW, a route outside our pools to some ENI, a /20 inside
        the pool to an appliance's ENI and a /25 inside it to an instance (not node blocks: our pools'
        node mask is /24), plus the local and default IGW routes every table has."""
        ec2 = self.sim.client()
        sub = next(iter(self.sim.subnets.values()))
        eni = ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
        names = set()
        for t in self.sim.route_table_ids:
            self.sim.add_foreign_route(t, "10.244.200.0/24", GatewayId=self.sim.igw_id)
            self.sim.add_foreign_route(t, "192.168.7.0/24", NetworkInterfaceId=eni)
            self.sim.add_foreign_route(t, "10.244.16.0/20", NetworkInterfaceId=eni)
            self.sim.add_foreign_route(t, "10.244.40.128/25", NetworkInterfaceId=eni)
            names |= {f"{t}:10.244.200.0/24", f"{t}:192.168.7.0/24", f"{t}:0.0.0.0/0", f"{t}:10.0.0.0/16",
                      f"{t}:10.244.16.0/20", f"{t}:10.244.40.128/25"}
        self.sim.reset_log()
        return names

    def foreign_snapshot(self, names: set[str]) -> dict[str, Any]:
        snap = self.all_routes()
        return {n: snap.get(n) for n in names}

    def set_limit(self, routes: int) -> None:
        self.sim.route_limit = routes

    def used(self) -> int:
        return max(self.sim.used(t) or 0 for t in self.sim.route_table_ids)

    learned_text = "limit learned from EC2"
    quota_permission = "servicequotas:GetServiceQuota"

    def deny_quota(self, real_limit: int) -> None:
        """GetServiceQuota is denied; the tables still hold `real_limit` routes per family."""
        self.sim.deny_quota = True
        self.sim.route_limit = real_limit

    def fill(self, count: int) -> None:
        """`count` foreign IPv4 routes in each of our tables (to the IGW), stored server-side."""
        for t in self.sim.route_table_ids:
            self.sim.fill(t, count)

    def create_attempts(self) -> int:
        return self.sim.calls("ec2:CreateRoute")

    def mutating_calls(self) -> int:
        return sum(self.sim.calls(a) for a in ("ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute",
                                               "ec2:ModifyNetworkInterfaceAttribute",
                                               "ec2:ModifyInstanceAttribute"))

    def list_calls(self) -> int:
        return self.sim.calls("ec2:DescribeRouteTables")

    def reset_log(self) -> None:
        self.sim.reset_log()

    def prerequisite_ok(self, node: NodeRoutes) -> bool:
        eni = self.target_of(node)
        ni = self.sim.client().describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        return not ni["SourceDestCheck"]

    def faults(self, *, throttle_every: int = 0, error_every: int = 0) -> None:
        """Count-based faults (deterministic whatever the CPU load): see routectl.sim.faults."""
        self.sim.faults = FaultPlan(throttle_every=throttle_every, error_every=error_every, seed=SEED)

    def fault_counts(self) -> tuple[int, int]:
        return self.sim.throttled, self.sim.injected_errors

    def applied_then_failed(self) -> int:
        return self.sim.faults.applied_then_failed
