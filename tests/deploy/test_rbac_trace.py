"""RBAC from behaviour: the real controller and agent run against the Kubernetes API emulator, and every
request they make must be allowed by the rendered manifests, and every grant must have been used.

test_manifests.py pins the roles to a reviewed list; this test proves that list is what the code needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy import rbac, workload
from tests.deploy.conftest import REPO

NAMESPACE = workload.NAMESPACE
ACCOUNTS = {"controller": "routectl-controller", "agent": "routectl-agent"}
# The agent fetches, watches twice and posts an Event; the controller does far more.
MIN_REQUESTS = {"controller": 20, "agent": 5}
# Grants a short run does not reliably reach, each with the code that needs it. The test fails if that
# code disappears (then the grant is unused and must go) — so the exemption cannot go stale silently.
RARE: dict[tuple[str, rbac.Grant], tuple[str, str, str]] = {
    ("controller", rbac.Grant(None, "", "nodes", "get", "")): (
        "routectl/controller/assigner.py", 'self.client.get(f"/api/v1/nodes/',
        "re-read a Node after its resourceVersion-guarded podCIDR patch lost a race"),
}


def requests_of(trace: workload.Trace, component: str) -> list[Any]:
    """The HTTP requests one component made."""
    return trace.controller_requests if component == "controller" else trace.agent_requests


def env_of(objs: list[dict[str, Any]]) -> dict[str, str]:
    """Literal env values of the controller container."""
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    ctr = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in ctr["env"] if "value" in e}


def test_the_workload_runs_the_controller_as_deployed(rendered_all: dict[str, list[dict[str, Any]]]) -> None:
    for objs in rendered_all.values():
        env = env_of(objs)
        assert env["ROUTECTL_LEASE_NAME"] == workload.LEASE_NAME
        assert env["ROUTECTL_EVENT_NAMESPACE"] == workload.EVENT_NAMESPACE
        assert {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"} == {NAMESPACE}


@pytest.mark.slow
@pytest.mark.parametrize("component", sorted(ACCOUNTS))
def test_every_request_is_allowed(component: str, cluster_traces: dict[str, workload.Trace],
                                  rendered_all: dict[str, list[dict[str, Any]]]) -> None:
    for cloud, trace in cluster_traces.items():
        grants = rbac.grants_for(rendered_all[cloud], NAMESPACE, ACCOUNTS[component])
        requests = requests_of(trace, component)
        assert len(requests) >= MIN_REQUESTS[component], f"{component} on {cloud}: the workload is broken"
        denied = sorted({f"{r.method} {r.path} -> {a}" for r in requests
                         if (a := rbac.attributes(r)) is not None and not rbac.matching(grants, a)})
        assert denied == [], f"{component} on {cloud} would be forbidden:\n" + "\n".join(denied)


@pytest.mark.slow
@pytest.mark.parametrize("component", sorted(ACCOUNTS))
def test_every_grant_is_used(component: str, cluster_traces: dict[str, workload.Trace],
                             rendered_all: dict[str, list[dict[str, Any]]]) -> None:
    granted: set[rbac.Grant] = set()
    used: set[rbac.Grant] = set()
    for cloud, trace in cluster_traces.items():
        grants = rbac.grants_for(rendered_all[cloud], NAMESPACE, ACCOUNTS[component])
        granted |= grants
        for r in requests_of(trace, component):
            if (a := rbac.attributes(r)) is not None:
                used |= rbac.matching(grants, a)
    rare = {g for (c, g) in RARE if c == component}
    unused = sorted(map(str, granted - used - rare))
    assert unused == [], f"{component} is granted what it never used:\n" + "\n".join(unused)
    for (c, grant), (path, snippet, why) in RARE.items():
        if c != component:
            continue
        assert grant in granted, f"exemption for a grant that no longer exists: {grant}"
        source = (Path(REPO) / path).read_text(encoding="utf-8")
        assert snippet in source, f"{grant} was kept for {path} ({why}), which no longer does that"


# ----------------------------------------------------------------------------- the authorizer itself
def _objs(rules: list[dict[str, Any]], kind: str = "ClusterRole",
          namespace: str = "") -> list[dict[str, Any]]:
    meta = {"name": "r", **({"namespace": namespace} if namespace else {})}
    binding_kind = "RoleBinding" if kind == "Role" else "ClusterRoleBinding"
    return [{"kind": kind, "metadata": meta, "rules": rules},
            {"kind": binding_kind, "metadata": dict(meta),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "r"},
             "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}]


def test_authorizer_follows_kube_rbac() -> None:
    leases = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create"],
              "resourceNames": ["mine"]}
    grants = rbac.grants_for(_objs([leases], "Role", "ns"), "ns", "sa")
    def lease(verb: str, namespace: str, name: str) -> rbac.Attributes:
        return rbac.Attributes(verb, "coordination.k8s.io", "leases", namespace, name)

    assert rbac.matching(grants, lease("get", "ns", "mine"))
    assert not rbac.matching(grants, lease("get", "other-ns", "mine"))
    assert not rbac.matching(grants, lease("get", "ns", "theirs"))
    # create carries no name in the URL: resourceNames never allow it
    assert not rbac.matching(grants, lease("create", "ns", ""))
    assert not rbac.grants_for(_objs([leases], "Role", "ns"), "ns", "another-sa")
    nodes = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]}
    grants = rbac.grants_for(_objs([nodes]), "ns", "sa")
    assert rbac.matching(grants, rbac.Attributes("patch", "", "nodes", "", "n1"))
    assert not rbac.matching(grants, rbac.Attributes("patch", "", "nodes/status", "", "n1"))  # subresource
    assert not rbac.matching(grants, rbac.Attributes("update", "", "nodes", "", "n1"))


@pytest.mark.slow
def test_a_missing_grant_is_caught(cluster_traces: dict[str, workload.Trace],
                                   rendered_all: dict[str, list[dict[str, Any]]]) -> None:
    import copy

    objs = copy.deepcopy(rendered_all["aws"])
    role = next(o for o in objs
                if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "routectl-controller")
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["nodes/status"]]
    grants = rbac.grants_for(objs, NAMESPACE, ACCOUNTS["controller"])
    denied = {a.resource for r in cluster_traces["aws"].controller_requests
              if (a := rbac.attributes(r)) is not None and not rbac.matching(grants, a)}
    assert denied == {"nodes/status"}
