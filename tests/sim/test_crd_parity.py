"""The embedded API server answers PodCIDRPool writes as a real kube-apiserver did.

Ground truth: ../shared/realapi/podcidrpool-validation.json (kube-apiserver v1.36.2 with
crds/podcidrpool.yaml). Every case goes over HTTP to an emulator that installed the same CRD; the verdict
must match, and our 422 must print through kubectl exactly as the real server's did: the CEL rule's own
message word for word, with its field path and value, and the OpenAPI schema's causes beside it.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from routectl.crd import load_crd
from routectl.sim.kube import KubeServer

# shared/ sits beside the checkout (for a developer and in CI alike).
GROUND_TRUTH = Path(__file__).resolve().parents[3] / "shared" / "realapi" / "podcidrpool-validation.json"
CASES: list[dict[str, Any]] = json.loads(GROUND_TRUTH.read_text())["cases"]
BASE = "/apis/routectl.io/v1alpha1/podcidrpools"


def call(kube: KubeServer, method: str, path: str, body: Any,
         content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{kube.url}{path}", data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def real_causes(message: str) -> list[str]:
    """The causes in kubectl's rendering: one after ``is invalid: ``, or a ``\\n* `` list."""
    rest = message.split(" is invalid: ", 1)[1]
    return [c for c in rest.split("\n* ") if c] if rest.startswith("\n* ") else [rest]


def pool(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "routectl.io/v1alpha1", "kind": "PodCIDRPool", "metadata": {"name": name},
            "spec": spec}


@pytest.fixture(scope="module")
def kube() -> Any:
    with KubeServer() as server:
        server.install_crd(load_crd())
        yield server


def _name(case: dict[str, Any]) -> str:
    found = re.search(r'PodCIDRPool "([^"]+)"', case.get("message", ""))
    return found.group(1) if found else "accepted"


def kubectl_message(answer: dict[str, Any]) -> str:
    """How kubectl prints a 422 Status (from its details): one cause inline, several as a ``* `` list."""
    details = answer["details"]
    causes = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in details["causes"]]
    head = f'The {details["kind"]} "{details["name"]}" is invalid: '
    return head + causes[0] if len(causes) == 1 else head + "".join(f"\n* {c}" for c in causes)


@pytest.mark.parametrize("index", range(len(CASES)), ids=lambda i: f"{CASES[i]['op']}-{i}")
def test_same_verdict_and_messages_as_the_real_api_server(kube: KubeServer, index: int) -> None:
    case = CASES[index]
    name = _name(case)
    try:
        if case["op"] == "create":
            code, answer = call(kube, "POST", BASE, pool(name, case["spec"]))
        else:
            old_code, old = call(kube, "POST", BASE, pool(name, case["old_spec"]))
            assert old_code == 201, old
            if case["op"] == "merge-patch":
                code, answer = call(kube, "PATCH", f"{BASE}/{name}", case["patch"],
                                    "application/merge-patch+json")
            else:
                body = pool(name, case["spec"])
                body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                code, answer = call(kube, "PUT", f"{BASE}/{name}", body)
    finally:
        if kube.exists("routectl.io/v1alpha1", "PodCIDRPool", name):
            kube.delete("routectl.io/v1alpha1", "PodCIDRPool", name)
    if case["accepted"]:
        assert code in (200, 201), answer
        if "defaulted_spec" in case:
            assert answer["spec"] == case["defaulted_spec"]
        return
    assert code == 422 and answer["reason"] == "Invalid", answer
    assert kubectl_message(answer) == case["message"]
    for cause in real_causes(case["message"]):  # each cause, CEL's own message among them, is in ours
        assert cause in answer["message"]


def test_every_cel_rule_message_of_the_crd_is_exercised() -> None:
    """The ground truth covers the pool CIDR rules, the spec-level mask rule and the transition rules."""
    crd_rules = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_messages = [" ".join(r["message"].split()) for r in crd_rules["x-kubernetes-validations"]]
    seen = " ".join(c.get("message", "") for c in CASES)
    assert spec_messages[0] in seen
    for field in ("cidrs", "nodeMaskSizeIPv4", "nodeMaskSizeIPv6"):
        for rule in crd_rules["properties"][field].get("x-kubernetes-validations", []):
            assert " ".join(rule["message"].split()) in seen, rule
