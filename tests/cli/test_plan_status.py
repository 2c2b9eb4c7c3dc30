"""`routectl plan` and `routectl status` against a simulated cluster (API emulator + fake cloud, converged by
the real controller, which is then stopped so that every request logged afterwards is ours).

Read-only is checked where it can be: the emulator's request log shows no write, the fake cloud's call
log shows no mutating call, and the cloud still lacks the route plan says it would create."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from routectl.cli import main
from routectl.ops.schema import PLAN_SCHEMA, STATUS_SCHEMA
from routectl.sim.aws import MUTATING_PREFIXES
from routectl.sim.cluster import SimCluster, network_condition

pytestmark = pytest.mark.slow

GCE_MUTATING = {"compute.routes.insert", "compute.routes.delete"}


def _converged(sim: SimCluster) -> SimCluster:
    sim.start()
    assert sim.wait_converged(timeout=90), "simulation did not converge"
    for c in sim.controllers:
        c.stop()
        assert not c.alive
    return sim


@pytest.fixture(scope="module")
def gce_sim() -> Iterator[SimCluster]:
    """5 GCE nodes, all routed; controller stopped."""
    sim = SimCluster(cloud="gce", nodes=5)
    try:
        yield _converged(sim)
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def aws_sim() -> Iterator[SimCluster]:
    """6 AWS nodes in a table limited to 6 routes (local + IGW + 4 nodes): 2 refused; controller stopped;
    then a 7th node registers and waits for a block."""
    sim = SimCluster(cloud="aws", nodes=6, route_limit=6)
    try:
        _converged(sim)
        sim.add_nodes(1)
        yield sim
    finally:
        sim.stop()


class Invocation:
    """One CLI run against a sim, with what it did to the emulator and the fake cloud."""

    def __init__(self, sim: SimCluster, args: list[str], env: dict[str, str] | None = None) -> None:
        fake: Any = sim.aws or sim.gce
        fake.reset_log()
        mark = sim.kube.requests.mark()
        self.result: Result = CliRunner().invoke(main, args, env=env or sim.controller_env(),
                                                 catch_exceptions=False)
        self.writes = sim.kube.requests.select(writes=True, since=mark)
        self.requests = sim.kube.requests.select(since=mark)
        self.cloud_calls = [c if isinstance(c, str) else c[1] for c in list(fake.call_log)]

    @property
    def mutating_cloud_calls(self) -> list[str]:
        return [c for c in self.cloud_calls
                if c in GCE_MUTATING or c.split(":", 1)[-1].startswith(MUTATING_PREFIXES)]

    def json(self) -> dict[str, Any]:
        assert self.result.exit_code == 0, self.result.output
        return json.loads(self.result.stdout)

    def assert_read_only(self) -> None:
        assert self.writes == [], [(r.verb, r.path) for r in self.writes]
        assert self.mutating_cloud_calls == []
        ours = [r for r in self.requests if r.user_agent.startswith("routectl-ops/")]
        assert {(r.verb, r.resource) for r in ours} >= {("list", "nodes"), ("list", "podcidrpools")}


def test_plan_on_a_converged_cluster_changes_nothing(gce_sim: SimCluster) -> None:
    run = Invocation(gce_sim, ["plan", "-o", "json"])
    report = run.json()
    jsonschema.validate(report, PLAN_SCHEMA)
    s = report["summary"]
    assert (s["create"], s["replace"], s["delete"], s["keep"], s["refused"]) == (0, 0, 0, 5, 0)
    assert report["actions"] == [] and report["waitingNodes"] == [] and report["warnings"] == []
    (table,) = report["tables"]
    assert table["usedBefore"] == table["usedAfter"] == 5 and table["headroomAfter"] == table["limit"] - 5
    run.assert_read_only()
    assert "compute.routes.list" in run.cloud_calls


def _route_of(sim: SimCluster, node: str) -> dict[str, Any]:
    cidr = sim.kube.get("v1", "Node", node)["spec"]["podCIDR"]
    (route,) = [r for r in sim.gce.routes_snapshot().values() if r["destRange"] == cidr]
    return route


def _gce_request(sim: SimCluster, method: str, path: str, body: dict[str, Any] | None = None) -> None:
    url = f"{sim.gce.endpoint}/compute/v1/projects/{sim.gce.project}/global/routes{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def test_plan_after_a_route_was_deleted_shows_exactly_that_create(gce_sim: SimCluster) -> None:
    victim = "node-0003"
    route = _route_of(gce_sim, victim)
    _gce_request(gce_sim, "DELETE", f"/{route['name']}")
    try:
        run = Invocation(gce_sim, ["plan", "-o", "json"])
        report = run.json()
        jsonschema.validate(report, PLAN_SCHEMA)
        (action,) = report["actions"]
        assert (action["kind"], action["destination"]) == ("create", route["destRange"])
        assert action["node"] == victim
        assert action["nextHop"].endswith(f"/instances/{victim}")
        assert report["summary"]["keep"] == 4
        (table,) = report["tables"]
        assert (table["create"], table["usedBefore"], table["usedAfter"]) == (1, 4, 5)
        run.assert_read_only()
        assert all(r["destRange"] != route["destRange"] for r in gce_sim.gce.routes_snapshot().values())

        text = Invocation(gce_sim, ["plan"])
        assert text.result.exit_code == 0, text.result.output
        assert "1 to create, 0 to replace, 0 to delete, 4 to keep" in text.result.stdout
        assert f"create  default  {route['destRange']}" in text.result.stdout
        text.assert_read_only()

        status = Invocation(gce_sim, ["status", "-o", "json"])
        (missing,) = status.json()["nodesWithoutRoutes"]
        assert (missing["name"], missing["reason"]) == (victim, "RouteMissing")
        assert missing["networkUnavailable"]["reason"] == "RouteCreated"  # the condition has not caught up
        status.assert_read_only()
    finally:
        keep = ("name", "network", "destRange", "nextHopInstance", "priority", "description", "tags")
        _gce_request(gce_sim, "POST", "", {k: route[k] for k in keep if k in route})


def test_plan_on_a_full_aws_table_lists_refused_routes_and_the_waiting_node(aws_sim: SimCluster) -> None:
    run = Invocation(aws_sim, ["plan", "-o", "json"])
    report = run.json()
    jsonschema.validate(report, PLAN_SCHEMA)
    unrouted = {n["metadata"]["name"] for n in aws_sim.nodes()
                if n["spec"].get("podCIDR") and network_condition(n)["status"] == "True"}
    assert len(unrouted) == 2
    assert report["actions"] == []
    assert {a["node"] for a in report["refused"]} == unrouted
    table, v6 = report["tables"]  # EC2 counts IPv4 and IPv6 routes apart: one capacity each
    assert table["id"].endswith("/ipv4") and v6["id"].endswith("/ipv6") and v6["usedAfter"] == 0
    assert (table["keep"], table["refused"], table["usedAfter"], table["limit"]) == (4, 2, 6, 6)
    assert table["headroomAfter"] == 0 and table["headroomAfterWaitingNodes"] == -3
    (waiting,) = report["waitingNodes"]
    held = {n["spec"]["podCIDR"] for n in aws_sim.nodes() if n["spec"].get("podCIDR")}
    assert waiting["node"] == "node-0007" and waiting["pool"] == "default" and waiting["problem"] is None
    assert waiting["podCIDRs"][0] not in held and waiting["podCIDRs"][0].startswith("10.244.")
    (warning,) = report["warnings"]
    assert warning["kind"] == "RouteLimitReached" and warning["refused"] == 2
    assert any("vpc/L-93826ACB" in a for a in warning["advice"])
    assert any("overlay" in a for a in warning["advice"])
    run.assert_read_only()
    assert "ec2:DescribeRouteTables" in run.cloud_calls
    assert aws_sim.kube.get("v1", "Node", "node-0007")["spec"].get("podCIDR") is None


def test_status_lists_nodes_without_routes_and_why(aws_sim: SimCluster) -> None:
    run = Invocation(aws_sim, ["status", "-o", "json"])
    report = run.json()
    jsonschema.validate(report, STATUS_SCHEMA)
    why = {n["name"]: n for n in report["nodesWithoutRoutes"]}
    unrouted = {n["metadata"]["name"] for n in aws_sim.nodes()
                if n["spec"].get("podCIDR") and network_condition(n)["status"] == "True"}
    assert set(why) == unrouted | {"node-0007"}
    for name in unrouted:
        assert why[name]["reason"] == "RouteLimitReached"
        assert why[name]["networkUnavailable"]["reason"] == "NoRouteCreated"
        assert "6/6 routes used" in why[name]["message"]
    assert why["node-0007"]["reason"] == "NoPodCIDR"
    assert why["node-0007"]["message"].startswith("waiting for a block from pool default")
    (pool,) = report["pools"]
    assert pool["allocated"] == pool["recomputed"]["allocated"] == 6
    assert pool["capacity"] == pool["recomputed"]["capacity"] == 256
    table, v6 = report["routeTables"]  # EC2 counts IPv4 and IPv6 apart: one capacity each
    assert table["id"].endswith("/ipv4") and v6["id"].endswith("/ipv6") and v6["used"] == 0
    assert (table["used"], table["limit"], table["source"]) == (6, 6, "cloud")
    assert [w["kind"] for w in report["warnings"]] == ["RouteLimitReached"]
    reasons = {(e["object"], e["reason"]) for e in report["recentWarningEvents"]}
    assert {(f"Node/{n}", "FailedToCreateRoute") for n in unrouted} <= reasons
    assert report["summary"] == {"nodes": 7, "routed": 4, "withoutRoute": 3, "pools": 1, "warnings": 1}
    run.assert_read_only()

    text = Invocation(aws_sim, ["status"])
    assert text.result.exit_code == 0
    assert "Nodes without routes (3):" in text.result.stdout
    assert "NoPodCIDR" in text.result.stdout and "RouteLimitReached" in text.result.stdout


def test_status_without_the_cloud_uses_pool_status(aws_sim: SimCluster) -> None:
    env = {"KUBECONFIG": aws_sim.kube.kubeconfig_path}
    run = Invocation(aws_sim, ["status", "--no-cloud", "-o", "json"], env=env)
    report = run.json()
    jsonschema.validate(report, STATUS_SCHEMA)
    assert report["cloudRead"] is False and run.cloud_calls == []
    table, v6 = report["routeTables"]
    assert table["id"].endswith("/ipv4") and v6["id"].endswith("/ipv6")
    assert (table["used"], table["limit"], table["source"]) == (6, 6, "poolStatus")
    # the controller's own RouteLimitReached condition stands in for the live planner's warning
    assert "RouteLimitReached" in {w["kind"] for w in report["warnings"]}
    assert {n["reason"] for n in report["nodesWithoutRoutes"]} == {"RouteLimitReached", "NoPodCIDR"}


def test_bad_cloud_settings_are_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ROUTECTL_GCE_PROJECT", "ROUTECTL_PROVIDER"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main, ["plan", "--provider", "gce"])
    assert result.exit_code == 2
    assert "gce needs a project" in result.output


def test_unreachable_api_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "users": [{"name": "x", "user": {}}]}))
    for cmd in ("plan", "status"):
        result = CliRunner().invoke(main, [cmd, "--kubeconfig", str(cfg), "--provider", "aws"])
        assert result.exit_code == 1, result.output
        assert "cannot reach the Kubernetes API at http://127.0.0.1:9" in result.output
