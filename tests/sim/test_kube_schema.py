"""Custom-resource admission in the emulator: pruning, defaulting and validation against the real CRD."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from routectl.sim.kube import KubeServer
from routectl.sim.kube_schema import admit
from routectl.sim.kube_store import ApiError

ROOT = pathlib.Path(__file__).resolve().parents[2]
API = "routectl.io/v1alpha1"


def test_prune_default_validate_unit() -> None:
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "size": {"type": "integer", "default": 24, "minimum": 1},
            "port": {"x-kubernetes-int-or-string": True},
            "note": {"type": "string", "nullable": True},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "sub": {"type": "object", "default": {}, "properties": {"flag": {"type": "boolean",
                                                                              "default": False}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }},
    }}
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "junk": 1,
           "spec": {"unknown": 1, "port": "http", "note": None, "free": {"any": {"thing": 1}},
                    "labels": {"a": "b"}}}
    out, causes = admit(obj, schema)
    assert causes == []
    assert "junk" not in out and "unknown" not in out["spec"]
    assert out["spec"]["size"] == 24 and out["spec"]["sub"] == {"flag": False}
    assert out["spec"]["free"] == {"any": {"thing": 1}} and out["spec"]["labels"] == {"a": "b"}
    _, causes = admit({"spec": {"size": 0, "port": 1.5, "tags": ["a", "a"]}}, schema)
    assert len(causes) == 3 and all(c.field.startswith("spec.") for c in causes)
    assert [str(c) for c in causes] == [
        "spec.port: Invalid value: 1.5: spec.port in body must be of type integer,string: \"number\"",
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        'spec.tags[1]: Duplicate value: "a"']


def test_real_podcidrpool_crd_and_examples(tmp_path: pathlib.Path) -> None:
    crd = yaml.safe_load((ROOT / "crds" / "podcidrpool.yaml").read_text())
    with KubeServer() as kube:
        kube.install_crd(crd)
        for path in sorted((ROOT / "deploy" / "examples").glob("pool-*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "PodCIDRPool":
                    created = kube.create(doc)
                    assert created["spec"]["routeLimitWarningPercent"] >= 1, path
        minimal = kube.create({"apiVersion": API, "kind": "PodCIDRPool", "metadata": {"name": "minimal"},
                               "spec": {"cidrs": ["10.99.0.0/16"], "bogus": True}})
        assert "bogus" not in minimal["spec"]
        assert minimal["spec"]["nodeMaskSizeIPv4"] == 24 and minimal["spec"]["nodeMaskSizeIPv6"] == 64
        assert minimal["spec"]["masquerade"] == {"masqLinkLocal": False}
        with pytest.raises(ApiError) as exc:
            kube.create({"apiVersion": API, "kind": "PodCIDRPool", "metadata": {"name": "bad"},
                         "spec": {"cidrs": ["not-a-cidr"]}})
        assert exc.value.code == 422 and "cidrs" in exc.value.message
        with pytest.raises(ApiError) as exc:
            kube.create({"apiVersion": API, "kind": "PodCIDRPool", "metadata": {"name": "nospec"}})
        assert exc.value.code == 422
        status = kube.patch_status(API, "PodCIDRPool", "minimal", {"status": {"observedGeneration": 1}})
        assert status["status"]["observedGeneration"] == 1
