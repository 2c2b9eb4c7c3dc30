"""deploy/examples and bad objects checked against the CRD's own openAPIV3Schema (jsonschema), then parsed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from routectl.crd import openapi_schema
from routectl.ipam.model import PoolSpec
from routectl.ipam.validate import validate_pool, validate_pools

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "deploy" / "examples").glob("*.yaml"))
VALIDATOR = jsonschema.Draft7Validator(openapi_schema())


def errors(obj: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(obj)]


def test_expected_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"pool-gce.yaml", "pool-aws.yaml", "pool-dualstack.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_valid_and_parses(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert errors(obj) == []
    spec = PoolSpec.from_resource(obj)
    assert validate_pool(spec) == []
    assert spec.name == obj["metadata"]["name"]


def test_examples_semantics() -> None:
    by_name = {p.name: PoolSpec.from_resource(yaml.safe_load(p.read_text())) for p in EXAMPLES}
    aws = by_name["pool-aws.yaml"]
    assert aws.cidrs == ("10.244.0.0/16",) and aws.masquerade.non_masquerade_cidrs == ("10.0.0.0/16",)
    ds = by_name["pool-dualstack.yaml"]
    assert ds.families == (4, 6) and ds.node_selector
    # GCE + dual-stack can live in one cluster (the AWS example is the alternative to the GCE one).
    assert validate_pools([by_name["pool-gce.yaml"], ds]) == {"gce-default": [], "dualstack": []}


GOOD: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "deploy/examples/pool-aws.yaml").read_text()
)


def bad(mutate: Any) -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    mutate(obj)
    return obj


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        (bad(lambda o: o.pop("spec")), ""),
        (bad(lambda o: o["spec"].pop("cidrs")), "spec"),
        (bad(lambda o: o["spec"].update(cidrs=[])), "spec.cidrs"),
        (bad(lambda o: o["spec"].update(cidrs="10.0.0.0/8")), "spec.cidrs"),
        (bad(lambda o: o["spec"].update(cidrs=["banana"])), "spec.cidrs.0"),
        (bad(lambda o: o["spec"].update(cidrs=["10.0.0.0"])), "spec.cidrs.0"),
        (bad(lambda o: o["spec"].update(cidrs=["10.0.0.0/8" + " " * 40])), "spec.cidrs.0"),
        (bad(lambda o: o["spec"].update(nodeMaskSizeIPv4=33)), "spec.nodeMaskSizeIPv4"),
        (bad(lambda o: o["spec"].update(nodeMaskSizeIPv6="64")), "spec.nodeMaskSizeIPv6"),
        (bad(lambda o: o["spec"].update(nodeSelector={"a": 1})), "spec.nodeSelector.a"),
        (bad(lambda o: o["spec"].update(reservedCIDRs=["x"])), "spec.reservedCIDRs.0"),
        (bad(lambda o: o["spec"]["masquerade"].update(masqLinkLocal="no")), "spec.masquerade.masqLinkLocal"),
        (
            bad(lambda o: o["spec"]["masquerade"].update(nonMasqueradeCIDRs=["vpc"])),
            "spec.masquerade.nonMasqueradeCIDRs.0",
        ),
        (bad(lambda o: o["spec"].update(routeLimitWarningPercent=0)), "spec.routeLimitWarningPercent"),
        (bad(lambda o: o["spec"].update(routeLimitWarningPercent=101)), "spec.routeLimitWarningPercent"),
        (bad(lambda o: o["spec"].update(routeLimitFallback="overlay")), "spec.routeLimitFallback"),
        (bad(lambda o: o.update(status={"overlayNodes": "2"})), "status.overlayNodes"),
        (bad(lambda o: o.update(status={"allocated": "3"})), "status.allocated"),
        (
            bad(lambda o: o.update(status={"conditions": [{"type": "Ready", "status": "Yes"}]})),
            "status.conditions.0",
        ),
    ],
)
def test_bad_examples_rejected_at_the_right_field(obj: dict[str, Any], where: str) -> None:
    errs = errors(obj)
    assert errs, "expected a schema error"
    assert any(e.split(":")[0] == where for e in errs), errs


def test_full_status_validates() -> None:
    obj = copy.deepcopy(GOOD)
    obj["status"] = {
        "observedGeneration": 3,
        "allocated": 40,
        "capacity": 256,
        "free": 216,
        "routesProgrammed": 40,
        "routeTables": [{"id": "rtb-0abc", "used": 42, "limit": 50}],
        "nodes": [{"name": "node-1", "cidrs": ["10.244.0.0/24"]}],
        "conditions": [
            {
                "type": "RouteLimitNearing",
                "status": "True",
                "reason": "RouteTableNearlyFull",
                "message": "rtb-0abc: 42 of 50 routes (84 %)",
                "lastTransitionTime": "2026-11-23T07:00:00Z",
                "observedGeneration": 3,
            }
        ],
    }
    assert errors(obj) == []
