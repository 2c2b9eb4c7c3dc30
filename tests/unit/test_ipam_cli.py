"""`routectl ipam` offline planner, driven through the real click group with CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from routectl.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["ipam", *args])
    return result.exit_code, result.stdout, result.stderr


def test_registered_in_group() -> None:
    assert "ipam" in CliRunner().invoke(main, ["--help"]).output


def test_table_plan() -> None:
    code, out, _ = run("--pool", str(EXAMPLES / "pool-aws.yaml"), "--nodes", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "POOL", "CIDRS"]
    assert lines[1].split() == ["node-0001", "aws-default", "10.244.0.0/24"]
    assert lines[2].split() == ["node-0002", "aws-default", "10.244.1.0/24"]
    assert ["aws-default", "2", "256", "254", "yes"] in [line.split() for line in lines]


def test_json_plan_with_existing_nodes_and_labels(tmp_path: Path) -> None:
    nodes = {
        "apiVersion": "v1",
        "kind": "NodeList",
        "items": [
            {
                "kind": "Node",
                "metadata": {"name": "node-0001"},
                "spec": {"podCIDRs": ["10.245.0.0/24", "fd00:10:245::/64"]},
            },
            {"kind": "Node", "metadata": {"name": "old-b"}, "spec": {"podCIDR": "10.245.0.0/24"}},
            {"kind": "Node", "metadata": {"name": "stray"}, "spec": {"podCIDRs": ["192.168.0.0/24"]}},
            {"kind": "Node", "metadata": {"name": "fresh"}, "spec": {}},
        ],
    }
    existing = tmp_path / "nodes.yaml"
    existing.write_text(yaml.safe_dump(nodes))
    code, out, _ = run(
        "--pool", str(EXAMPLES / "pool-dualstack.yaml"), "--pool", str(EXAMPLES / "pool-gce.yaml"),
        "--existing", str(existing), "--nodes", "2", "--label", "routectl.io/pool=dualstack",
        "--output", "json",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    assert report["plan"] == [
        {"node": "node-0002", "pool": "dualstack", "cidrs": ["10.245.1.0/24", "fd00:10:245:1::/64"]},
        {"node": "node-0003", "pool": "dualstack", "cidrs": ["10.245.2.0/24", "fd00:10:245:2::/64"]},
    ]
    kinds = {(f["node"], f["kind"]) for f in report["findings"]}
    assert kinds == {("old-b", "overlap"), ("stray", "outside")}
    usage = {u["pool"]: u for u in report["usage"]}
    assert usage["dualstack"]["allocated"] == 4  # node-0001, old-b (conflict, still counted) + 2 new
    assert report["problems"] == {} and report["error"] == ""


def test_simple_mapping_existing(tmp_path: Path) -> None:
    existing = tmp_path / "m.yaml"
    existing.write_text("a: 10.244.0.0/24\nb: [10.244.1.0/24]\n")
    code, out, _ = run("--pool", str(EXAMPLES / "pool-aws.yaml"), "--existing", str(existing), "--nodes", "1",
                       "--output", "json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["plan"][0]["cidrs"] == ["10.244.2.0/24"]


def test_exhaustion_exit_1_with_partial_plan(tmp_path: Path) -> None:
    pool = tmp_path / "p.yaml"
    pool.write_text(
        yaml.safe_dump(
            {"kind": "PodCIDRPool", "metadata": {"name": "tiny"}, "spec": {"cidrs": ["10.0.0.0/23"]}}
        )
    )
    code, out, err = run("--pool", str(pool), "--nodes", "3")
    assert code == 1
    assert "node-0002" in out and "node-0003" not in out
    assert "planned 2 of 3 nodes" in err and "append a CIDR" in err


def test_no_matching_pool_exit_1() -> None:
    code, _, err = run("--pool", str(EXAMPLES / "pool-dualstack.yaml"), "--nodes", "1")
    assert code == 1 and "no valid PodCIDRPool matches node node-0001" in err


def test_problems_are_printed(tmp_path: Path) -> None:
    pool = tmp_path / "p.yaml"
    pool.write_text(
        yaml.safe_dump_all(
            [
                {"kind": "PodCIDRPool", "metadata": {"name": "a"}, "spec": {"cidrs": ["10.0.0.0/16"]}},
                {"kind": "PodCIDRPool", "metadata": {"name": "b"}, "spec": {"cidrs": ["10.0.1.1/24"]}},
            ]
        )
    )
    code, out, _ = run("--pool", str(pool), "--nodes", "1")
    assert code == 0
    assert "problem: b: spec.cidrs[0] 10.0.1.1/24 has host bits set" in out
    assert ["b", "0", "0", "0", "no"] in [line.split() for line in out.splitlines()]


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    pool = tmp_path / "p.yaml"
    pool.write_text(
        yaml.safe_dump({"kind": "PodCIDRPool", "metadata": {"name": "a"}, "spec": {"cidrs": "x"}})
    )
    code, _, err = run("--pool", str(pool), "--nodes", "1")
    assert code == 2 and "spec.cidrs must be a list" in err
    empty = tmp_path / "e.yaml"
    empty.write_text("kind: ConfigMap\n")
    code, _, err = run("--pool", str(empty), "--nodes", "1")
    assert code == 2 and "no PodCIDRPool object found" in err
    code, _, err = run("--pool", str(EXAMPLES / "pool-aws.yaml"), "--nodes", "1", "--label", "nolabel")
    assert code == 2 and "not key=value" in err
    broken = tmp_path / "b.yaml"
    broken.write_text("a: [\n")
    code, _, err = run("--pool", str(broken), "--nodes", "1")
    assert code == 2 and "cannot read" in err
