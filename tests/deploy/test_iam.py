"""Cloud IAM from behaviour: every call the real drivers make against the fake clouds is granted by
deploy/iam, and everything deploy/iam grants was called.

The calls come from the fakes' own logs (server side): the real controller on a simulated cluster per
cloud, plus the drivers' less common paths (workload.py). The fakes name each request — moto's by its
IAM action (ec2:CreateRoute), the fake GCE by the Compute method it serves — and GCE_PERMISSIONS below
maps a method to the IAM permissions Compute Engine checks for it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy import workload
from tests.deploy.conftest import CLOUDS, DEPLOY, REPO

AWS_POLICY = DEPLOY / "iam" / "aws-policy.json"
GCE_ROLE = DEPLOY / "iam" / "gce-role.yaml"

# Fake GCE request label -> IAM permissions a real call needs. routes.insert with nextHopInstance is
# also checked against the network (compute.networks.updatePolicy) and the next-hop instance
# (compute.instances.use); operation polling and /wait are both compute.globalOperations.get.
GCE_PERMISSIONS: dict[str, frozenset[str]] = {
    "compute.routes.insert": frozenset({"compute.routes.create", "compute.networks.updatePolicy",
                                        "compute.instances.use"}),
    "compute.routes.delete": frozenset({"compute.routes.delete"}),
    "compute.routes.get": frozenset({"compute.routes.get"}),
    "compute.routes.list": frozenset({"compute.routes.list"}),
    "compute.globalOperations.get": frozenset({"compute.globalOperations.get"}),
    "compute.instances.get": frozenset({"compute.instances.get"}),
    "compute.instances.list": frozenset({"compute.instances.list"}),
    "compute.projects.get": frozenset({"compute.projects.get"}),
    # Cloud Quotas API: QuotaInfo get and list are both cloudquotas.quotas.get (roles/cloudquotas.viewer)
    "cloudquotas.quotas.get": frozenset({"cloudquotas.quotas.get"}),
    "compute.networks.get": frozenset({"compute.networks.get"}),
}
AWS_SERVICES = ("ec2:", "servicequotas:")
# A resource ARN each AWS action acts on, to check the policy's Resource scoping covers it.
AWS_SAMPLE_RESOURCE = {
    "ec2:CreateRoute": "arn:aws:ec2:us-east-1:123456789012:route-table/rtb-0123456789abcdef0",
    "ec2:ReplaceRoute": "arn:aws:ec2:us-east-1:123456789012:route-table/rtb-0123456789abcdef0",
    "ec2:DeleteRoute": "arn:aws:ec2:us-east-1:123456789012:route-table/rtb-0123456789abcdef0",
    "ec2:ModifyNetworkInterfaceAttribute": "arn:aws:ec2:us-east-1:123456789012:network-interface/eni-0123",
    "servicequotas:GetServiceQuota": "arn:aws:servicequotas:us-east-1:123456789012:vpc/L-93826ACB",
    "ec2:DescribeRouteTables": "*",
    "ec2:DescribeInstances": "*",
}


def aws_statements() -> list[dict[str, Any]]:
    """The policy's statements (validated for shape)."""
    policy = json.loads(AWS_POLICY.read_text(encoding="utf-8"))
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert isinstance(statements, list) and statements
    for st in statements:
        assert set(st) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, st
        assert st["Effect"] == "Allow"
        assert isinstance(st["Action"], list) and st["Action"] == sorted(set(st["Action"]))
    return statements


def aws_granted() -> set[str]:
    """Every action the policy allows (wildcards refused: each action must be named)."""
    actions = {a for st in aws_statements() for a in st["Action"]}
    assert not [a for a in actions if "*" in a or "?" in a], "name each action; no wildcards"
    return actions


def gce_granted() -> set[str]:
    """The custom role's permissions."""
    role = yaml.safe_load(GCE_ROLE.read_text(encoding="utf-8"))
    assert set(role) == {"title", "description", "stage", "includedPermissions"}
    perms = role["includedPermissions"]
    assert perms == sorted(set(perms)), "keep the permissions sorted and unique"
    assert all(p.startswith(("compute.", "cloudquotas.")) and "*" not in p for p in perms)
    return set(perms)


def required(cloud: str, calls: list[str]) -> set[str]:
    """IAM permissions/actions the logged calls need; fails on a call it cannot map."""
    if cloud == "aws":
        unknown = sorted({c for c in calls if not c.startswith(AWS_SERVICES) or c.endswith(":?")})
        assert unknown == [], f"calls outside EC2/Service Quotas (map and grant them deliberately): {unknown}"
        return set(calls)
    unknown = sorted({c for c in calls if c not in GCE_PERMISSIONS})
    assert unknown == [], f"fake GCE served requests this test cannot map to permissions: {unknown}"
    return set().union(*(GCE_PERMISSIONS[c] for c in calls)) if calls else set()


def granted(cloud: str) -> set[str]:
    """What deploy/iam grants for `cloud`."""
    return aws_granted() if cloud == "aws" else gce_granted()


@pytest.fixture(scope="module")
def calls(cluster_traces: dict[str, workload.Trace],
          driver_calls: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every cloud call of both workloads, per cloud."""
    return {cloud: cluster_traces[cloud].cloud_calls + driver_calls[cloud] for cloud in CLOUDS}


def test_policy_files_are_well_formed() -> None:
    assert aws_granted()
    assert gce_granted()


@pytest.mark.slow
@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_controller_alone_exercises_the_core_calls(cloud: str,
                                                       cluster_traces: dict[str, workload.Trace]) -> None:
    """The cluster run by itself (not only the driver workload) creates, deletes and replaces routes."""
    seen = set(cluster_traces[cloud].cloud_calls)
    core = ({"ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute", "ec2:DescribeRouteTables"}
            if cloud == "aws" else {"compute.routes.insert", "compute.routes.delete", "compute.routes.list"})
    assert core <= seen, f"missing {core - seen}"


@pytest.mark.slow
@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_cloud_call_is_granted(cloud: str, calls: dict[str, list[str]]) -> None:
    missing = sorted(required(cloud, calls[cloud]) - granted(cloud))
    assert missing == [], f"routectl calls {cloud} without being granted: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("cloud", CLOUDS)
def test_nothing_unused_is_granted(cloud: str, calls: dict[str, list[str]]) -> None:
    unused = sorted(granted(cloud) - required(cloud, calls[cloud]))
    assert unused == [], f"deploy/iam grants {cloud} permissions routectl never used: {unused}"


@pytest.mark.slow
def test_aws_resource_scoping_covers_every_call(calls: dict[str, list[str]]) -> None:
    for action in sorted(set(calls["aws"])):
        arn = AWS_SAMPLE_RESOURCE.get(action)
        assert arn is not None, f"add a sample resource for {action}"
        statements = [st for st in aws_statements() if action in st["Action"]]
        resources = [r for st in statements
                     for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])]
        assert any(fnmatch.fnmatchcase(arn, pattern) for pattern in resources), f"{action} on {arn}"
        assert all("Condition" not in st for st in statements), "conditions would need their own proof"


def test_the_check_catches_a_missing_or_extra_grant() -> None:
    calls = ["compute.routes.insert", "compute.routes.list"]
    need = required("gce", calls)
    assert "compute.networks.updatePolicy" in need and "compute.instances.use" in need
    assert need - {"compute.routes.create", "compute.routes.list"} == {
        "compute.networks.updatePolicy", "compute.instances.use"}
    with pytest.raises(AssertionError, match="cannot map"):
        required("gce", ["compute.firewalls.insert"])
    with pytest.raises(AssertionError, match="outside EC2"):
        required("aws", ["sts:GetCallerIdentity"])


@pytest.mark.slow
def test_the_workloads_reach_every_cloud_call_the_drivers_can_make(calls: dict[str, list[str]]) -> None:
    """Every `_call("<op>", ...)` in routectl/cloud must show up in the fakes' logs, so a new driver call
    cannot escape the checks above by not being exercised."""
    ops = set()
    for path in sorted((REPO / "routectl" / "cloud").glob("*.py")):
        ops |= set(re.findall(r'_call\(\s*"([^"]+)"', path.read_text(encoding="utf-8")))
    assert ops, "no driver calls found: has the call-site convention changed?"
    seen = set(calls["aws"]) | set(calls["gce"])
    # The fake GCE labels by method; operation wait is served as (and needs) globalOperations.get.
    label = {"globalOperations.wait": "compute.globalOperations.get",
             "cloudquotas.quotaInfos.get": "cloudquotas.quotas.get",
             "cloudquotas.quotaInfos.list": "cloudquotas.quotas.get"}
    missing = sorted(op for op in ops
                     if (op if ":" in op else label.get(op, f"compute.{op}")) not in seen)
    assert missing == [], f"driver calls no workload exercised (extend workload.py): {missing}"


def test_metrics_are_not_public_in_the_manifests() -> None:
    """The controller runs with hostNetwork: unless the manifests opt in, /metrics stays loopback-only."""
    from routectl.controller.config import ENV_VARS

    text = (DEPLOY / "base" / "controller.yaml").read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Deployment"]
    ctrs = [c for d in docs for c in d["spec"]["template"]["spec"]["containers"]]
    env = {e["name"]: e.get("value") for c in ctrs for e in c.get("env") or []}
    assert str(env.get(ENV_VARS["metrics_public"], "false")).lower() in ("false", "0", "")
