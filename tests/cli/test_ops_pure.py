"""Pure parts of simulate/plan/status: report dicts, rendering, predictions, the stall rule, on plain data."""

from __future__ import annotations

from typing import Any

import click
import jsonschema
import pytest

from routectl.cloud.reconcile import RoutePlan
from routectl.constants import API_VERSION, POOL_KIND
from routectl.ops.plan_report import plan_report
from routectl.ops.planning import Waiting, node_routes, pool_set, predict_allocations
from routectl.ops.render import render_plan, render_simulate, render_status, table
from routectl.ops.report import detail_reason, limit_advice, simulate_report, warnings
from routectl.ops.schema import PLAN_SCHEMA, SIMULATE_SCHEMA, STATUS_SCHEMA
from routectl.ops.status_report import node_without_route, status_report
from routectl.routes.model import (
    CallStats,
    CloudRoute,
    LimitWarning,
    NodeRouteStatus,
    RouteAction,
    TableCapacity,
)
from routectl.sim.cluster import KUBELET_NO_ROUTE_MESSAGE
from routectl.sim.simulate import check_settings, stall_reason

AWS_QUOTA = "the Service Quotas value vpc/L-93826ACB 'Routes per route table'"


def node(name: str, cidr: str | None = None, status: str = "True", reason: str = "NoRouteCreated",
         message: str = KUBELET_NO_ROUTE_MESSAGE, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"providerID": f"aws:///us-east-1a/i-{abs(hash(name)) % 10**12:012x}"}
    if cidr:
        spec.update(podCIDR=cidr, podCIDRs=[cidr])
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}}, "spec": spec,
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": status, "reason": reason,
                                       "message": message}]}}


def pool(name: str = "default", cidrs: tuple[str, ...] = ("10.244.0.0/16",), mask: int = 24,
         status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": POOL_KIND,
            "metadata": {"name": name, "generation": generation},
            "spec": {"cidrs": list(cidrs), "nodeMaskSizeIPv4": mask}, "status": status or {}}


def cap(table_id: str = "rtb-1", used: int = 50, limit: int = 50) -> TableCapacity:
    return TableCapacity(table_id, used, limit, AWS_QUOTA, "adjustable up to 1,000", "aws")


def test_table_aligns_columns_and_shows_missing_values_as_dash() -> None:
    out = table(("A", "LONGER"), [("x", None), ("yyyy", 3)]).splitlines()
    assert out == ["A     LONGER", "x     -", "yyyy  3"]


@pytest.mark.parametrize(("message", "reason", "want"), [
    ("RouteLimitReached: aws route table rtb: 50/50", "NoRouteCreated", "RouteLimitReached"),
    ("InstanceNotFound: no such instance", "NoRouteCreated", "InstanceNotFound"),
    ("Node created without a route", "NoRouteCreated", "NoRouteCreated"),
    ("RouteController created a route", "RouteCreated", "RouteCreated"),
    ("see: the docs", "NoRouteCreated", "NoRouteCreated"),
])
def test_detail_reason(message: str, reason: str, want: str) -> None:
    assert detail_reason({"message": message, "reason": reason}) == want


def test_limit_advice_names_the_quota_the_number_and_the_overlay() -> None:
    quota, overlay = limit_advice(cap(), 62)
    assert "vpc/L-93826ACB" in quota and "at least 62" in quota
    assert overlay.startswith("move the cluster to an overlay network")


def test_warnings_prefer_live_limit_warnings_and_keep_pool_problems() -> None:
    exhausted = pool(status={"conditions": [
        {"type": "Exhausted", "status": "True", "reason": "NoFreeBlocks", "message": "no free /24"},
        {"type": "RouteLimitReached", "status": "True", "reason": "RouteLimitReached",
         "message": "old text"}]})
    live = LimitWarning("reached", "rtb-1", 50, 50, "50/50. Ways out: ...", 12, "aws", AWS_QUOTA, 62)
    got = warnings([live], [cap()], [exhausted])
    assert [w["kind"] for w in got] == ["RouteLimitReached", "Exhausted"]
    assert got[0]["refused"] == 12 and "at least 62" in got[0]["advice"][0]
    # cloud not read: the pool's own condition stands in, once
    got = warnings(None, [], [exhausted])
    assert [w["kind"] for w in got] == ["Exhausted", "RouteLimitReached"]


def test_simulate_report_matches_its_schema_and_renders() -> None:
    nodes = [node("n1", "10.244.0.0/24", "False", "RouteCreated", "ok"),
             node("n2", "10.244.1.0/24", "True", "NoRouteCreated", "RouteLimitReached: full")]
    routes = [CloudRoute("rtb-1", "10.244.0.0/24", "eni-1", owned=True),
              CloudRoute("rtb-1", "10.244.9.0/24", "eni-9", owned=False)]
    live = LimitWarning("reached", "rtb-1", 50, 50, "full. Ways out: x", 1, "aws", AWS_QUOTA, 51)
    report = simulate_report(cloud="aws", converged=True, elapsed=1.234, failure=None, nodes=nodes,
                             pools=[pool()], routes=routes, caps=[cap()], limit_warnings=[live],
                             settings={"nodes": 2, "poolCIDR": "10.244.0.0/16", "mask": 24,
                                       "routeLimit": None, "timeout": 60.0})
    jsonschema.validate(report, SIMULATE_SCHEMA)
    assert report["nodes"][0]["routes"] == [{"table": "rtb-1", "destination": "10.244.0.0/24",
                                             "nextHop": "eni-1", "state": "active"}]
    assert report["nodes"][1]["routes"] == []  # a route nobody owns is never attributed to a node
    text = render_simulate(report)
    assert "n2    10.244.1.0/24  -" in text and "NoRouteCreated/RouteLimitReached" in text
    assert "full." in text and "Ways out:\n    - raise" in text
    assert text.splitlines()[-1] == \
        "Converged in 1.2s on aws: 2 nodes, 1 routed, 1 without route, 1 warning(s)."


def test_predict_allocations_uses_free_blocks_only_and_reports_exhaustion() -> None:
    pools = pool_set([pool(cidrs=("10.1.0.0/23",), mask=24)])
    nodes = [node("a", "10.1.0.0/24"), node("b"), node("c")]
    waiting, ipam = predict_allocations(pools, nodes)
    assert waiting[0] == Waiting("b", "default", ("10.1.1.0/24",), None)
    assert waiting[1].node == "c" and waiting[1].pod_cidrs == () and "no free" in (waiting[1].problem or "")
    assert ipam["usage"]["default"] == {"allocated": 1, "capacity": 2, "free": 1}
    assert [n.name for n in node_routes(nodes)] == ["a"]


def test_pool_set_ignores_bad_cidrs_and_reports_unparsable_pools() -> None:
    bad = {"apiVersion": API_VERSION, "kind": POOL_KIND, "metadata": {"name": "bad"}, "spec": {"cidrs": "x"}}
    ps = pool_set([pool(cidrs=("10.2.0.0/16", "nonsense")), bad])
    assert ps.cluster_cidrs == ("10.2.0.0/16",)
    assert "bad" in ps.problems


def _plan(actions: list[RouteAction], keeps: list[RouteAction], refused: list[RouteAction],
          tables: list[TableCapacity], nodes: dict[str, NodeRouteStatus]) -> RoutePlan:
    calls = CallStats({"ec2:DescribeRouteTables": 1})
    return RoutePlan(actions, keeps, refused, tables, [], nodes, {}, [], calls)


def test_plan_report_counts_per_table_and_headroom() -> None:
    old = CloudRoute("rtb-1", "10.244.5.0/24", "eni-old", owned=True)
    actions = [RouteAction("delete", "rtb-1", "10.244.9.0/24", "eni-x", None, old),
               RouteAction("replace", "rtb-1", "10.244.5.0/24", "eni-new", "n5", old),
               RouteAction("create", "rtb-1", "10.244.6.0/24", "eni-6", "n6"),
               RouteAction("create", "rtb-1", "10.244.7.0/24", "eni-7", "n7")]
    keeps = [RouteAction("keep", "rtb-1", "10.244.1.0/24", "eni-1", "n1", old)]
    refused = [RouteAction("create", "rtb-1", "10.244.8.0/24", "eni-8", "n8")]
    statuses = {"n6": NodeRouteStatus(False, "RoutePending"),
                "n8": NodeRouteStatus(False, "RouteLimitReached"),
                "n9": NodeRouteStatus(False, "InstanceNotFound", "gone")}
    waiting = [Waiting("w1", "default", ("10.244.10.0/24",), None)]
    plan = _plan(actions, keeps, refused, [cap(used=48, limit=50)], statuses)
    report = plan_report(provider="aws", plan=plan, waiting=waiting, pools=[pool()], ipam={})
    jsonschema.validate(report, PLAN_SCHEMA)
    (t,) = report["tables"]
    assert (t["create"], t["replace"], t["delete"], t["keep"], t["refused"]) == (2, 1, 1, 1, 1)
    assert (t["usedBefore"], t["usedAfter"], t["headroomAfter"]) == (48, 49, 1)
    assert t["headroomAfterWaitingNodes"] == -1  # the refused route and the waiting node's route need 2
    assert report["nodeProblems"] == [{"node": "n9", "reason": "InstanceNotFound", "message": "gone"}]
    assert report["summary"]["changes"] == 4
    replace = next(a for a in report["actions"] if a["kind"] == "replace")
    assert (replace["currentNextHop"], replace["nextHop"]) == ("eni-old", "eni-new")
    text = render_plan(report)
    assert "Plan: 2 to create, 1 to replace, 1 to delete, 1 to keep, 1 refused" in text
    assert "refused  rtb-1  10.244.8.0/24" in text and "w1" in text and "InstanceNotFound" in text


def test_status_flags_a_route_missing_behind_a_routecreated_condition() -> None:
    n = node("n1", "10.244.0.0/24", "False", "RouteCreated", "ok")
    plan = _plan([], [], [], [cap("rtb-1", 3), cap("rtb-2", 3)], {})
    by_dest = {"10.244.0.0/24": [CloudRoute("rtb-1", "10.244.0.0/24", "eni-1", owned=True)]}
    entry = node_without_route(n, plan, by_dest, {})
    assert entry is not None and entry["reason"] == "RouteMissing"
    assert "10.244.0.0/24 in rtb-2" in entry["message"]
    assert node_without_route(n, None, {}, {}) is None  # cloud not read: the condition is all we know


def test_status_report_schema_and_text() -> None:
    p = pool(status={"allocated": 1, "free": 255, "capacity": 256, "routesProgrammed": 1,
                     "routeTables": [{"id": "rtb-1", "used": 3, "limit": 50}]})
    nodes = [node("n1", "10.244.0.0/24", "False", "RouteCreated", "ok"), node("n2")]
    events = [{"type": "Warning", "reason": "FailedToCreateRoute", "message": "m", "count": 2,
               "source": {"component": "routectl"}, "lastTimestamp": "2026-01-01T00:00:00Z",
               "involvedObject": {"kind": "Node", "name": "n2"}},
              {"type": "Warning", "reason": "Other", "source": {"component": "kubelet"}}]
    ps = pool_set([p])
    waiting, ipam = predict_allocations(ps, nodes)
    report = status_report(provider=None, nodes=nodes, pools=[p], events=events, plan=None, waiting=waiting,
                           ipam=ipam, cloud_error=None)
    jsonschema.validate(report, STATUS_SCHEMA)
    assert report["routeTables"] == [{"id": "rtb-1", "used": 3, "limit": 50, "free": 47, "quota": "",
                                      "note": "", "source": "poolStatus"}]
    assert [(n["name"], n["reason"]) for n in report["nodesWithoutRoutes"]] == [("n2", "NoPodCIDR")]
    assert [e["object"] for e in report["recentWarningEvents"]] == ["Node/n2"]
    assert report["pools"][0]["recomputed"] == {"allocated": 1, "capacity": 256, "free": 255}
    text = render_status(report)
    assert "as last reported in pool status" in text and "Nodes without routes (1):" in text


def test_stall_reason_needs_settled_nodes_and_a_pool_that_says_why() -> None:
    done = node("a", "10.0.0.0/25", "False", "RouteCreated", "ok")
    waiting = node("b")
    exhausted = pool(status={"observedGeneration": 1, "conditions": [
        {"type": "Exhausted", "status": "True", "message": "no free /25"}]})
    assert stall_reason([done, waiting], [exhausted]) == \
        "1 node(s) cannot get a pod CIDR: pool default Exhausted: no free /25"
    assert stall_reason([done, waiting], [pool(status={"observedGeneration": 1})]) is None  # may still come
    assert stall_reason([done, waiting], [pool(status={"observedGeneration": 0, "conditions": [
        {"type": "Exhausted", "status": "True", "message": "stale"}]})]) is None  # status not current
    unsettled = node("c", "10.0.0.128/25")  # has a block, routectl has not written its condition yet
    assert stall_reason([unsettled, waiting], [exhausted]) is None
    assert stall_reason([done], [exhausted]) is None
    assert "no PodCIDRPool" in (stall_reason([waiting], []) or "")


@pytest.mark.parametrize(("args", "hint"), [
    ((3, "10.0.0.0/33", 24, 60, None), "--pool-cidr"),
    ((3, "fd00::/64", 80, 60, None), "--pool-cidr"),
    ((3, "10.0.0.0/16", 15, 60, None), "--mask"),
    ((3, "10.0.0.0/8", 25, 60, None), "--mask"),
    ((-1, "10.0.0.0/16", 24, 60, None), "--nodes"),
    ((3, "10.0.0.0/16", 24, 0, None), "--timeout"),
    ((3, "10.0.0.0/16", 24, 60, 0), "--route-limit"),
])
def test_check_settings_rejects_bad_input(args: tuple[Any, ...], hint: str) -> None:
    with pytest.raises(click.BadParameter) as err:
        check_settings(*args)
    assert err.value.param_hint == hint


def test_check_settings_accepts_and_canonicalises() -> None:
    assert check_settings(100, "10.244.0.0/16", 24, 60, 50) == "10.244.0.0/16"


def test_status_reports_an_overlay_node_as_on_the_overlay_not_as_a_missing_route() -> None:
    from routectl.ops.status_report import node_without_route

    node = {"metadata": {"name": "n1", "annotations": {"routectl.io/transport": "overlay"}},
            "spec": {"podCIDRs": ["10.244.5.0/24"]},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False",
                                       "reason": "RouteOverlay", "message": "over the VXLAN overlay: ..."}]}}
    entry = node_without_route(node, None, {}, {})
    assert entry is not None and entry["reason"] == "RouteOverlay" and entry["routes"] == []


def test_a_tables_two_family_capacities_count_as_one_table_for_a_nodes_routes() -> None:
    """AWS reports rtb-1/ipv4 and rtb-1/ipv6 (one capacity per family): an IPv4 node routed in rtb-1 is
    in every table; with a second table it is in one of two and the cell says so."""
    from routectl.ops.render import node_route_cells, table_count

    node = {"podCIDRs": ["10.244.1.0/24"],
            "routes": [{"table": "rtb-1", "destination": "10.244.1.0/24", "nextHop": "eni-1"}]}
    one_table = [{"id": "rtb-1/ipv4"}, {"id": "rtb-1/ipv6"}]
    assert table_count(one_table) == 1
    assert node_route_cells(node, table_count(one_table)) == ("10.244.1.0/24", "eni-1")
    two_tables = [*one_table, {"id": "rtb-2/ipv4"}, {"id": "rtb-2/ipv6"}]
    assert node_route_cells(node, table_count(two_tables))[0] == "10.244.1.0/24 (1/2 tables)"
    assert table_count([{"id": "my-network"}]) == 1  # GCE: the network's quota
