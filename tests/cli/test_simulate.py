"""`routectl simulate` end to end, as a user runs it: the installed CLI in a subprocess, the real controller
on the API emulator and a fake cloud. The runs start together (module fixture) to keep the wall time down."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from routectl.ops.schema import SIMULATE_SCHEMA
from routectl.sim.simulate import fit_defaults

pytestmark = pytest.mark.slow

RUNS: dict[str, list[str]] = {
    # a table whose quota is still the pre-2025-06 default of 50 routes
    "aws60_table": ["--cloud", "aws", "--nodes", "60", "--route-limit", "50"],
    "aws60_json": ["--cloud", "aws", "--nodes", "60", "--route-limit", "50", "--output", "json"],
    "aws60_500": ["--cloud", "aws", "--nodes", "60", "--route-limit", "500", "-o", "json"],
    "gce30_static20": ["--cloud", "gce", "--nodes", "30", "--route-limit", "20", "-o", "json"],
    "gce20_json": ["--cloud", "gce", "--nodes", "20", "-o", "json"],
    # a /24 pool cut in /25 blocks has room for 2 nodes, not 4: can never converge
    "exhausted": ["--cloud", "gce", "--nodes", "4", "--pool-cidr", "10.250.0.0/24", "--mask", "25",
                  "-o", "json"],
    "tiny_timeout": ["--cloud", "gce", "--nodes", "3", "--timeout", "0.01"],
    # more nodes than the default pool's 256 /24 blocks and the default ROUTES quota of 250
    "gce260_defaults": ["--cloud", "gce", "--nodes", "260", "-o", "json"],
}


class Run:
    """A finished `routectl simulate` process."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._done: tuple[str, str] | None = None

    def result(self) -> tuple[int, str, str]:
        if self._done is None:
            self._done = self.proc.communicate(timeout=240)
        return self.proc.returncode, self._done[0], self._done[1]

    def json(self) -> dict[str, Any]:
        code, out, err = self.result()
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            pytest.fail(f"stdout is not JSON (exit {code}):\n{out}\nstderr:\n{err[-3000:]}")


def simulate_cmd(*args: str) -> list[str]:
    """The CLI entry point, run with this interpreter (a generous default timeout: CI machines are busy)."""
    if "--timeout" not in args:
        args = ("--timeout", "180", *args)
    return [sys.executable, "-m", "routectl.cli", "simulate", "--no-progress", *args]


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    procs = {k: Run(subprocess.Popen(simulate_cmd(*a), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)) for k, a in RUNS.items()}
    yield procs
    for r in procs.values():
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.communicate()


def _nodes_ok(report: dict[str, Any], pool: str = "10.244.0.0/16") -> None:
    """Every node holds one distinct block of the pool; routed nodes' routes point at their block."""
    blocks = [n["podCIDRs"][0] for n in report["nodes"]]
    assert len(set(blocks)) == len(blocks), "a block was handed out twice"
    assert all(ipaddress.ip_network(b).subnet_of(ipaddress.ip_network(pool)) for b in blocks)
    for n in report["nodes"]:
        if n["networkUnavailable"]["status"] == "False":
            assert n["routes"], n
            assert {r["destination"] for r in n["routes"]} == set(n["podCIDRs"])


def test_aws_60_nodes_hits_the_route_limit_and_says_both_ways_out(runs: dict[str, Run]) -> None:
    code, out, err = runs["aws60_table"].result()
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    rows = [line.split() for line in out.splitlines() if line.startswith("node-")]
    assert len(rows) == 60
    # 50 routes per table: the local route and the IGW default route leave 48 for nodes
    assert sum(1 for r in rows if "RouteCreated" in r[-1] and r[-2] == "False") == 48
    unrouted = [r for r in rows if r[-2] == "True"]
    assert len(unrouted) == 12
    assert all(r[-1] == "NoRouteCreated/RouteLimitReached" and r[2] == "-" for r in unrouted)
    assert "WARNING RouteLimitReached" in out
    assert "vpc/L-93826ACB" in out and "to at least 62" in out
    assert "overlay network (e.g. VXLAN)" in out
    table_rows = [line.split() for line in out.splitlines() if line.startswith("rtb-")]
    assert [r[1:4] for r in table_rows] == [["50", "50", "0"], ["0", "50", "50"]]  # IPv4, IPv6
    last = out.strip().splitlines()[-1]
    assert last.startswith("Converged in ") and "60 nodes, 48 routed, 12 without route" in last


def test_aws_60_json_shape_and_content(runs: dict[str, Run]) -> None:
    code, _, err = runs["aws60_json"].result()
    report = runs["aws60_json"].json()
    assert code == 0, err[-3000:]
    jsonschema.validate(report, SIMULATE_SCHEMA)
    assert report["converged"] is True and report["failure"] is None and report["cloud"] == "aws"
    assert report["summary"] == {"nodes": 60, "withPodCIDR": 60, "routed": 48, "withoutRoute": 12,
                                 "warnings": 1}
    _nodes_ok(report)
    table, v6 = report["routeTables"]  # EC2 counts IPv4 and IPv6 routes apart
    assert table["id"].endswith("/ipv4") and (v6["used"], v6["limit"]) == (0, 50)
    assert (table["used"], table["limit"], table["free"]) == (50, 50, 0)
    (warning,) = report["warnings"]
    assert warning["kind"] == "RouteLimitReached" and warning["table"] == table["id"]
    assert (warning["used"], warning["limit"], warning["refused"]) == (50, 50, 12)
    assert any("vpc/L-93826ACB" in a and "62" in a for a in warning["advice"])
    assert any("overlay" in a for a in warning["advice"])
    for n in report["nodes"]:
        cond = n["networkUnavailable"]
        if cond["status"] == "True":
            assert cond["reason"] == "NoRouteCreated" and cond["message"].startswith("RouteLimitReached")
            assert n["routes"] == []
        else:
            assert cond["reason"] == "RouteCreated"
            assert all(r["nextHop"].startswith("eni-") and table["id"] == f"{r['table']}/ipv4"
                       for r in n["routes"])
    (pool,) = report["pools"]
    assert (pool["allocated"], pool["routesProgrammed"]) == (60, 48)


def test_gce_20_nodes_all_routed(runs: dict[str, Run]) -> None:
    code, _, err = runs["gce20_json"].result()
    report = runs["gce20_json"].json()
    assert code == 0, err[-3000:]
    jsonschema.validate(report, SIMULATE_SCHEMA)
    assert report["converged"] is True and report["warnings"] == []
    assert report["summary"]["routed"] == 20 and report["summary"]["withoutRoute"] == 0
    _nodes_ok(report)
    for n in report["nodes"]:
        assert n["networkUnavailable"]["reason"] == "RouteCreated"
        (route,) = n["routes"]
        assert route["nextHop"].endswith(f"/instances/{n['name']}")
    (quota,) = report["routeTables"]
    assert quota["used"] == 20 and quota["limit"] == 250
    assert "STATIC_ROUTES_PER_NETWORK" in quota["quota"]


def test_aws_60_nodes_under_the_2025_default_quota_are_all_routed(runs: dict[str, Run]) -> None:
    code, _, err = runs["aws60_500"].result()
    report = runs["aws60_500"].json()
    assert code == 0, err[-3000:]
    assert report["summary"]["routed"] == 60 and report["summary"]["withoutRoute"] == 0
    assert report["warnings"] == []
    assert [(t["used"], t["limit"]) for t in report["routeTables"]] == [(62, 500), (0, 500)]


def test_gce_advice_names_the_static_routes_quota(runs: dict[str, Run]) -> None:
    code, _, err = runs["gce30_static20"].result()
    report = runs["gce30_static20"].json()
    assert code == 0, err[-3000:]
    assert report["summary"]["routed"] == 20 and report["summary"]["withoutRoute"] == 10
    (warning,) = report["warnings"]
    assert warning["kind"] == "RouteLimitReached"
    assert any("STATIC_ROUTES_PER_NETWORK" in a and "at least 30" in a and "quotas preferences" in a
               for a in warning["advice"])


def test_exhausted_pool_fails_with_the_reason_and_advice(runs: dict[str, Run]) -> None:
    code, _, err = runs["exhausted"].result()
    report = runs["exhausted"].json()
    assert code == 1, err[-3000:]
    jsonschema.validate(report, SIMULATE_SCHEMA)
    assert report["converged"] is False
    assert "2 node(s) cannot get a pod CIDR" in report["failure"]
    assert report["summary"]["withPodCIDR"] == 2
    kinds = {w["kind"]: w for w in report["warnings"]}
    assert "Exhausted" in kinds and any("append a CIDR" in a for a in kinds["Exhausted"]["advice"])


def test_tiny_timeout_is_a_failure(runs: dict[str, Run]) -> None:
    code, out, err = runs["tiny_timeout"].result()
    assert code == 1, f"{out}\n{err[-3000:]}"
    assert out.strip().splitlines()[-1].startswith("NOT converged")
    assert "not converged within 0.01s" in out


def test_gce_260_nodes_with_defaults_converge_and_say_which_flags_were_chosen(runs: dict[str, Run]) -> None:
    code, _, err = runs["gce260_defaults"].result()
    report = runs["gce260_defaults"].json()
    assert code == 0, err[-3000:]
    assert report["converged"] is True and report["summary"]["routed"] == 260
    pool = report["settings"]["poolCIDR"]
    assert pool == "10.0.0.0/15" and report["settings"]["routeLimit"] == 520
    _nodes_ok(report, pool)
    assert "choose with --pool-cidr" in err and "choose with --route-limit" in err


def test_defaults_fit_n_only_when_the_user_chose_nothing() -> None:
    assert fit_defaults("gce", 20, 24, None, None) == ("10.244.0.0/16", None, [])
    assert fit_defaults("gce", 256, 24, None, None)[:2] == ("10.244.0.0/16", 512)
    assert fit_defaults("gce", 5000, 24, None, None)[:2] == ("10.0.0.0/11", 10000)
    assert fit_defaults("gce", 500, 26, None, None)[0] == "10.244.0.0/16"  # 1,024 /26 blocks
    assert fit_defaults("gce", 2000, 26, None, None)[0] == "10.0.0.0/15"
    assert fit_defaults("gce", 500, 24, "10.9.0.0/16", 300) == ("10.9.0.0/16", 300, [])
    assert fit_defaults("aws", 60, 24, None, None) == ("10.244.0.0/16", None, [])  # the AWS wall stays


@pytest.mark.parametrize(("args", "complaint"), [
    (["--cloud", "azure"], "'azure' is not one of"),
    (["--cloud", "aws", "--pool-cidr", "10.244.0.1/16"], "--pool-cidr"),
    (["--cloud", "aws", "--pool-cidr", "10.244.0.0/16", "--mask", "8"], "--mask"),
    (["--cloud", "gce", "--nodes", "-1"], "--nodes"),
])
def test_bad_usage_exits_2_with_a_clear_message(args: list[str], complaint: str) -> None:
    proc = subprocess.run(simulate_cmd(*args), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert complaint in proc.stderr
