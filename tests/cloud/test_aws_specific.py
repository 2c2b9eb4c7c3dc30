"""AWS-only behaviour on moto: blackholes, ENI target, table selection, quota fallback, report-only mode."""

from __future__ import annotations

import pytest

from routectl.cloud.reconcile import RouteReconciler
from routectl.routes.model import NodeRoutes
from tests.cloud.harness import CLUSTER_CIDRS, AWSHarness


def test_blackhole_routes_are_cleaned_or_repaired(aws: AWSHarness) -> None:
    a = aws.add_node("node-1", ("10.244.1.0/24",))
    b = aws.add_node("node-2", ("10.244.2.0/24",))
    rec = aws.reconciler()
    rec.sync([a, b])
    aws.sim.terminate_node("node-1")  # node-1 is gone for good: its routes turn into blackholes
    states = {t: r["10.244.1.0/24"]["state"] for t, r in aws.per_table_routes().items()}
    assert set(states.values()) == {"blackhole"}
    # node-2's instance is replaced (same node, new instance): its blackholed route must be repaired
    table = aws.sim.route_table_ids[0]
    aws.sim.blackhole(table, "10.244.2.0/24")
    res = rec.sync([b])
    assert res.nodes["node-2"].ok
    routes = aws.per_table_routes()
    assert all("10.244.1.0/24" not in r for r in routes.values())
    assert routes[table]["10.244.2.0/24"]["state"] == "active"
    kinds = sorted(a.kind for a in res.actions)
    assert kinds == ["delete", "delete", "replace"]


def test_foreign_blackhole_outside_pools_survives(aws: AWSHarness) -> None:
    ec2 = aws.sim.client()
    sub = next(iter(aws.sim.subnets.values()))
    eni = ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
    table = aws.sim.route_table_ids[0]
    aws.sim.add_foreign_route(table, "172.16.0.0/24", NetworkInterfaceId=eni)
    ec2.delete_network_interface(NetworkInterfaceId=eni)
    assert aws.sim.routes(table)["172.16.0.0/24"]["state"] == "blackhole"
    aws.reconciler().sync([])
    assert "172.16.0.0/24" in aws.sim.routes(table)


def test_targets_primary_eni_of_multi_eni_instance(aws: AWSHarness) -> None:
    node = aws.add_node("node-1", ("10.244.1.0/24",))  # the harness attaches a second ENI
    inst = aws.sim.client().describe_instances(InstanceIds=[aws.sim.nodes["node-1"]["instance"]])
    enis = inst["Reservations"][0]["Instances"][0]["NetworkInterfaces"]
    assert len(enis) == 2
    aws.reconciler().sync([node])
    assert aws.routes_to() == {"10.244.1.0/24": {aws.sim.nodes["node-1"]["eni"]}}


def test_report_only_source_dest_check(aws: AWSHarness) -> None:
    node = aws.add_node("node-1", ("10.244.1.0/24",), prereq_ok=False)
    res = aws.reconciler(fix_source_dest_check=False).sync([node])
    assert res.nodes["node-1"].reason == "PrerequisiteFailed"
    assert "source/destination check" in res.nodes["node-1"].message
    assert not aws.prerequisite_ok(node)
    assert aws.mutating_calls() == 0 and aws.routes_to() == {}


def test_configured_table_ids_and_shared_tag(aws: AWSHarness) -> None:
    only = aws.sim.route_table_ids[1]
    node = aws.add_node("node-1", ("10.244.1.0/24",))
    RouteReconciler(aws.driver(route_table_ids=[only]), CLUSTER_CIDRS).sync([node])
    routes = aws.per_table_routes()
    assert "10.244.1.0/24" in routes[only]
    assert "10.244.1.0/24" not in routes[aws.sim.route_table_ids[0]]
    # a table tagged for another cluster is never used
    ec2 = aws.sim.client()
    other = ec2.create_route_table(VpcId=aws.sim.vpc_id, TagSpecifications=[{
        "ResourceType": "route-table", "Tags": [{"Key": "kubernetes.io/cluster/other", "Value": "shared"}]}])
    assert other["RouteTable"]["RouteTableId"] not in aws.driver().list_tables()


def test_quota_denied_attempts_until_ec2_refuses(aws: AWSHarness) -> None:
    """Denied GetServiceQuota: no guessed limit refuses routes; the table's real limit (here 5) is learned
    from the first RouteLimitExceeded and no more creates are tried in that table."""
    aws.sim.deny_quota = True
    aws.set_limit(5)
    nodes = [aws.add_node(f"node-{i}", (f"10.244.{i}.0/24",)) for i in range(1, 9)]
    drv = aws.driver(concurrency=1)
    caps = drv.capacity(drv.list_routes())
    assert {c.source for c in caps} == {"assumed"} and {c.family for c in caps} == {"ipv4", "ipv6"}
    assert "permission servicequotas:GetServiceQuota is missing" in caps[0].note
    res = RouteReconciler(drv, CLUSTER_CIDRS, concurrency=1).sync(nodes)
    # 3 fit per table (local + IGW already there); once EC2 says RouteLimitExceeded, no more tries
    assert aws.create_attempts() == 2 * (3 + 1)
    assert sum(s.ok for s in res.nodes.values()) == 3
    assert all(s.reason == "RouteLimitReached" for n, s in res.nodes.items() if not s.ok)
    assert any(w.kind == "reached" and "overlay" in w.message and "learned from EC2" in w.message
               for w in res.warnings)
    v4 = [c for c in drv.capacity(drv.list_routes()) if c.family == "ipv4"]
    assert {(c.limit, c.source) for c in v4} == {(5, "learned")}


def test_quota_outage_keeps_last_value_and_fallback_is_short_lived(aws: AWSHarness) -> None:
    """An outage keeps the last value read; a fallback is not pinned for the whole quota TTL; denied means
    "unknown" (None), not a guess."""
    aws.set_limit(200)
    drv = aws.driver(quota_ttl=0)  # re-read on every call
    drv.caller.initial = drv.caller.maximum = 0.001  # fast retries
    assert drv.route_limit() == 200
    aws.sim.quota_error = "ServiceException"
    assert drv.route_limit() == 200 and "keeping the last value read (200)" in drv.quota_note
    fresh = aws.driver(quota_retry_ttl=0)  # quota_ttl stays 1 h
    fresh.caller.initial = fresh.caller.maximum = 0.001
    assert fresh.route_limit() is None  # nothing read yet: unknown, briefly
    aws.sim.quota_error = None
    assert fresh.route_limit() == 200 and fresh.quota_note == ""
    aws.sim.deny_quota = True
    aws.reset_log()
    denied = aws.driver()
    assert denied.route_limit() is None and "AccessDenied" in denied.quota_note
    assert aws.sim.calls("servicequotas:GetServiceQuota") == 1  # denied is not retried


def test_dual_stack_counts_each_family_against_its_own_limit(aws: AWSHarness) -> None:
    """60 IPv4 + 60 IPv6 node routes in a table whose quota is 100 per family: all created, and both
    capacities are reported (IPv4 also holds the local and IGW routes)."""
    aws.set_limit(100)
    table = aws.sim.route_table_ids[0]
    nodes = [aws.add_node(f"n{i}", (f"10.244.{i}.0/24", f"fd00:10:244:{i:x}::/64")) for i in range(60)]
    rec = RouteReconciler(aws.driver(route_table_ids=[table]), CLUSTER_CIDRS, concurrency=8)
    res = rec.sync(nodes)
    assert all(s.ok for s in res.nodes.values()), {k: v for k, v in res.nodes.items() if not v.ok}
    assert res.refused == [] and res.failed == []
    assert (aws.sim.used(table, "ipv4"), aws.sim.used(table, "ipv6")) == (62, 60)
    caps = {c.display_id: (c.used, c.limit) for c in res.tables}
    assert caps == {f"{table}/ipv4": (62, 100), f"{table}/ipv6": (60, 100)}
    assert [c.status_entry()["id"] for c in res.tables] == [f"{table}/ipv4", f"{table}/ipv6"]


def test_instance_lookups_follow_next_token(aws: AWSHarness) -> None:
    """moto pages DescribeInstances at 100 even when IDs are given: 110 nodes are all resolved."""
    nodes = [aws.add_node(f"n{i}", (f"10.244.{i}.0/24",)) for i in range(110)]
    drv = aws.driver()
    got = drv.resolve_many(nodes)
    assert got == {n.name: aws.target_of(n) for n in nodes}
    assert aws.sim.calls("ec2:DescribeInstances") == 2  # one batch, two pages


def test_simulated_vpc_holds_hundreds_of_nodes_per_az() -> None:
    """Subnets are sized to the node count: 500 nodes in one AZ fit (a /24 held 251)."""
    from routectl.sim.aws import MotoAWS, subnet_plan

    assert subnet_plan("10.0.0.0/16", 1, 500) == ["10.0.0.0/21"]
    assert subnet_plan("10.0.0.0/16", 3, 5000) == ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19"]
    with pytest.raises(ValueError, match="larger vpc_cidr"):
        subnet_plan("10.0.0.0/24", 2, 5000)
    sim = MotoAWS("c1", azs=("us-east-1a",), nodes=500).start()
    try:
        out = sim.client().run_instances(ImageId="ami-12c6146b", MinCount=300, MaxCount=300,
                                         InstanceType="t3.small", SubnetId=sim.subnets["us-east-1a"])
        assert len(out["Instances"]) == 300
    finally:
        sim.stop()


def test_create_gives_up_when_existing_route_is_never_listed(aws: AWSHarness,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """RouteAlreadyExists, yet the route is not listed (an inconsistent answer moto cannot produce, hence
    the patched lookup): one more CreateRoute, then a clear CloudError, not endless recursion."""
    from routectl.cloud.base import CloudError

    node = aws.add_node("node-1", ("10.244.1.0/24",))
    drv = aws.driver()
    table, target = drv.list_tables()[0], drv.resolve(node)
    drv.create(table, "10.244.1.0/24", target, node)
    monkeypatch.setattr(drv, "_find", lambda table, destination: None)
    aws.reset_log()
    with pytest.raises(CloudError, match="does not list the route"):
        drv.create(table, "10.244.1.0/24", target, node)
    assert aws.create_attempts() == 2


def test_iam_actions_logged(aws: AWSHarness) -> None:
    node = aws.add_node("node-1", ("10.244.1.0/24",), prereq_ok=False)
    aws.reconciler().sync([node])
    assert set(aws.sim.call_log) == {"ec2:DescribeRouteTables", "servicequotas:GetServiceQuota",
                                     "ec2:DescribeInstances", "ec2:ModifyNetworkInterfaceAttribute",
                                     "ec2:CreateRoute"}


def test_ipv6_route_uses_ipv6_destination(aws: AWSHarness) -> None:
    node = NodeRoutes("n", "u", aws.add_node("node-1", ()).provider_id, ("fd00:10:244:7::/64",))
    aws.reconciler().sync([node])
    assert "fd00:10:244:7::/64" in aws.routes_to()


def test_ownership_follows_the_pools_node_mask(aws: AWSHarness) -> None:
    """A pool cut in /26 blocks: its /26 node routes are ours (kept, not re-created), while a /24 to an ENI
    and a blackholed /20 inside the same pool are foreign and survive a sync with no node at all."""
    table = aws.sim.route_table_ids[0]
    nodes = [aws.add_node(f"n{i}", (f"10.244.0.{64 * i}/26",)) for i in range(3)]
    ec2 = aws.sim.client()
    eni = ec2.create_network_interface(SubnetId=next(iter(aws.sim.subnets.values())))["NetworkInterface"]
    aws.sim.add_foreign_route(table, "10.244.9.0/24", NetworkInterfaceId=eni["NetworkInterfaceId"])
    gone = ec2.create_network_interface(SubnetId=next(iter(aws.sim.subnets.values())))["NetworkInterface"]
    aws.sim.add_foreign_route(table, "10.244.32.0/20", NetworkInterfaceId=gone["NetworkInterfaceId"])
    ec2.delete_network_interface(NetworkInterfaceId=gone["NetworkInterfaceId"])
    assert aws.sim.routes(table)["10.244.32.0/20"]["state"] == "blackhole"
    rec = RouteReconciler(aws.driver(route_table_ids=[table]), CLUSTER_CIDRS)
    rec.set_node_masks({"10.244.0.0/16": 26, "fd00:10:244::/56": 64})
    assert all(s.ok for s in rec.sync(nodes).nodes.values())
    aws.reset_log()
    again = RouteReconciler(aws.driver(route_table_ids=[table]), CLUSTER_CIDRS)
    again.set_node_masks({"10.244.0.0/16": 26})
    res = again.sync(nodes)
    assert res.actions == [] and all(s.ok for s in res.nodes.values()) and aws.mutating_calls() == 0
    again.sync([])
    left = aws.sim.routes(table)
    assert "10.244.9.0/24" in left and "10.244.32.0/20" in left
    assert not any(f"10.244.0.{64 * i}/26" in left for i in range(3))


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_raised_quota_is_seen_within_five_minutes_while_nodes_wait_for_room(aws: AWSHarness) -> None:
    """While a table is full, Service Quotas is re-read every 5 min (not every hour): the refused node gets
    its route at the first sync after that. With room, the hourly cache stands."""
    from routectl.cloud.aws import QUOTA_FULL_TTL

    clock = FakeClock()
    aws.set_limit(4)  # local + IGW routes take 2: two node routes fit per table
    nodes = [aws.add_node(f"node-{i}", (f"10.244.{i}.0/24",)) for i in (1, 2, 3)]
    rec = aws.reconciler(clock=clock)
    res = rec.sync(nodes)
    assert not res.nodes["node-3"].ok and res.nodes["node-3"].reason == "RouteLimitReached"
    aws.set_limit(10)  # the quota increase is granted
    reads = aws.sim.calls("servicequotas:GetServiceQuota")
    clock.now += QUOTA_FULL_TTL - 1
    assert not rec.sync(nodes).nodes["node-3"].ok  # still within the bound: the old value
    assert aws.sim.calls("servicequotas:GetServiceQuota") == reads
    clock.now += 2
    assert rec.sync(nodes).nodes["node-3"].ok  # past it: re-read, room, route created
    assert aws.sim.calls("servicequotas:GetServiceQuota") == reads + 1
    clock.now += QUOTA_FULL_TTL + 1  # room now (6 of 10): back to the hourly cache
    rec.sync(nodes)
    assert aws.sim.calls("servicequotas:GetServiceQuota") == reads + 1
    clock.now += 3600
    rec.sync(nodes)
    assert aws.sim.calls("servicequotas:GetServiceQuota") == reads + 2
