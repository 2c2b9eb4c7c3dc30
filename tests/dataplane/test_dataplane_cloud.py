"""Dataplane proof with the router's routes taken from the fake cloud's route table as routectl wrote it.

For each cloud (the fake GCE HTTP server with the real google-cloud-compute client, and moto with boto3)
routectl's real route reconciler programs the two nodes' pod CIDRs; the test then reads the table back
with an independent view (GCE: destRange + nextHopInstance; AWS: DestinationCidrBlock +
NetworkInterfaceId), maps each next hop to its node and installs exactly those routes in the router
namespace. Removing node B from routectl's sync deletes its cloud route, and pod → pod-on-B stops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from routectl.cloud.factory import make_driver
from routectl.cloud.reconcile import RouteReconciler
from routectl.routes.model import NodeRoutes
from tests.dataplane import scenario
from tests.dataplane.scenario import Lab

pytestmark = [pytest.mark.dataplane, pytest.mark.slow]

CLUSTER = "dataplane"


@dataclass
class CloudRoutes:
    """routectl's reconciler for one fake cloud, and a reader of that cloud's table: {dest: topo node}."""

    reconciler: RouteReconciler
    nodes: dict[str, NodeRoutes]  # topology node name -> what routectl sees
    read_back: Callable[[], dict[str, str]]

    def program(self, *names: str) -> dict[str, str]:
        """Run routectl's route sync for exactly these nodes, then read the cloud table back."""
        result = self.reconciler.sync([self.nodes[n] for n in names])
        assert not result.failed and not result.refused, (result.failed, result.refused)
        return self.read_back()


def _node_routes(name: str, provider_id: str) -> NodeRoutes:
    return NodeRoutes(name=f"node-{name}", uid=f"uid-{name}", provider_id=provider_id,
                      pod_cidrs=scenario.NODES[name].pod_cidrs)


@contextmanager
def gce_cloud() -> Iterator[CloudRoutes]:
    from routectl.sim.fake_gce import FakeGCE

    with FakeGCE(op_delay=0.0) as gce:
        instances = {f"gce-node-{n}": n for n in scenario.NODES}
        nodes = {n: _node_routes(n, gce.add_instance("us-central1-a", f"gce-node-{n}"))
                 for n in scenario.NODES}
        driver = make_driver("gce", project=gce.project, network=gce.network, cluster_name=CLUSTER,
                             endpoint=gce.endpoint)

        def read_back() -> dict[str, str]:
            out = {}
            for route in gce.routes_snapshot().values():
                hop = route.get("nextHopInstance") or ""
                instance = hop.rsplit("/instances/", 1)[-1] if "/instances/" in hop else None
                if instance in instances:
                    out[route["destRange"]] = instances[instance]
            return out

        yield CloudRoutes(RouteReconciler(driver, [scenario.CLUSTER_CIDR]), nodes, read_back)


@contextmanager
def aws_cloud() -> Iterator[CloudRoutes]:
    from routectl.sim.aws import MotoAWS

    with MotoAWS(cluster_id=CLUSTER) as aws:
        nodes = {n: _node_routes(n, aws.add_node(f"aws-node-{n}")) for n in scenario.NODES}
        enis = {aws.nodes[f"aws-node-{n}"]["eni"]: n for n in scenario.NODES}
        driver = make_driver("aws", cluster_id=CLUSTER, region=aws.region, endpoint_url=aws.endpoint,
                             cluster_cidrs=[scenario.CLUSTER_CIDR], session=aws.session())
        ec2 = aws.client()

        def read_back() -> dict[str, str]:
            out = {}
            tables = ec2.describe_route_tables(RouteTableIds=aws.route_table_ids)["RouteTables"]
            for table in tables:
                for route in table["Routes"]:
                    eni = route.get("NetworkInterfaceId")
                    if eni in enis and route.get("State") == "active":
                        out[route["DestinationCidrBlock"]] = enis[eni]
            return out

        yield CloudRoutes(RouteReconciler(driver, [scenario.CLUSTER_CIDR]), nodes, read_back)


CLOUDS = {"gce": gce_cloud, "aws": aws_cloud}


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_dataplane_with_routes_routectl_wrote_to_the_cloud(lab: Lab, cloud: str):
    with CLOUDS[cloud]() as cr:
        routes = cr.program("a", "b")
        assert routes == dict(scenario.pod_routes(scenario.NODES)), routes
        sc = scenario.build(lab, routes)
        assert sc.topo.installed_routes == routes

        scenario.assert_wired_by_the_plugins(sc)
        scenario.assert_nat_less_and_masqueraded(sc)
        scenario.assert_host_port(sc)
        scenario.assert_del_releases_and_next_address(sc)

        # routectl drops node B: its cloud route goes, the router loses it, pod → pod-on-B stops working
        def drop_b() -> None:
            after = cr.program("a")
            assert after == {scenario.NODES["a"].pod_cidrs[0]: "a"}, after
            sc.topo.set_routes(after)

        scenario.assert_route_is_what_makes_it_work(sc, drop_b)
        # and node B back: the route returns and so does pod → pod
        sc.topo.set_routes(cr.program("a", "b"))
        b1 = sc.topo.nodes["b"].pods[0]
        assert sc.seen("a", 0, b1.ip) == sc.topo.nodes["a"].pods[0].ip

        scenario.assert_cleanup(sc)
