"""Pure parts of the API emulator: patch algebra and selector parsing, without HTTP."""

from __future__ import annotations

import datetime

import pytest

from routectl.sim.kube_patch import PatchError, apply_patch, json_patch, merge_patch, strategic_merge_patch
from routectl.sim.kube_select import SelectorError, parse_field_selector, parse_label_selector
from routectl.sim.kube_table import age, jsonpath, table


def test_merge_patch_rfc7386() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"b": None, "c": [3]}, "e": {"f": 1}}) == {"a": {"c": [3]}, "d": 1,
                                                                                "e": {"f": 1}}
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # not mutated


def test_json_patch_operations_and_errors() -> None:
    doc = {"metadata": {"labels": {"a/b": "1"}, "finalizers": ["x"]}, "spec": {}}
    out = json_patch(doc, [
        {"op": "add", "path": "/metadata/finalizers/-", "value": "y"},
        {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec/labels"},
        {"op": "move", "from": "/metadata/finalizers/0", "path": "/spec/first"},
        {"op": "test", "path": "/spec/first", "value": "x"},
        {"op": "remove", "path": "/metadata/labels"},
    ])
    assert out == {"metadata": {"finalizers": ["y"]}, "spec": {"labels": {"a/b": "2"}, "first": "x"}}
    with pytest.raises(PatchError) as exc:
        json_patch(doc, [{"op": "test", "path": "/metadata/finalizers/0", "value": "nope"}])
    assert exc.value.status == 422
    with pytest.raises(PatchError) as exc:
        json_patch(doc, [{"op": "remove", "path": "/metadata/missing"}])
    assert exc.value.status == 422
    with pytest.raises(PatchError) as exc:
        json_patch(doc, {"op": "add"})
    assert exc.value.status == 400
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "add", "path": "/metadata/finalizers/5", "value": 1}])


def test_strategic_merge_lists_and_directives() -> None:
    node = {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "NetworkUnavailable", "status": "True"}]},
            "metadata": {"finalizers": ["a"]}, "spec": {"taints": [{"key": "t"}]}}
    out = strategic_merge_patch(node, {"status": {"conditions": [
        {"type": "NetworkUnavailable", "status": "False"}, {"type": "Extra", "status": "True"}]},
        "metadata": {"finalizers": ["b", "a"]}, "spec": {"taints": []}})
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                           {"type": "NetworkUnavailable", "status": "False"},
                                           {"type": "Extra", "status": "True"}]
    assert out["metadata"]["finalizers"] == ["a", "b"] and out["spec"]["taints"] == []
    out = strategic_merge_patch(out, {"status": {"conditions": [{"type": "Extra", "$patch": "delete"}],
                                                 "$setElementOrder/conditions": [{"type": "Ready"}]}})
    assert [c["type"] for c in out["status"]["conditions"]] == ["Ready", "NetworkUnavailable"]
    out = strategic_merge_patch(out, {"spec": {"$patch": "replace", "unschedulable": True}})
    assert out["spec"] == {"unschedulable": True}
    with pytest.raises(PatchError):
        strategic_merge_patch(node, {"status": {"conditions": [{"status": "no type"}]}})


def test_apply_patch_content_types() -> None:
    assert apply_patch("application/merge-patch+json; charset=utf-8", {"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    for ctype, status in (("application/apply-patch+yaml", 415), ("text/plain", 415)):
        with pytest.raises(PatchError) as exc:
            apply_patch(ctype, {}, {})
        assert exc.value.status == status
    with pytest.raises(PatchError) as exc:
        apply_patch("application/merge-patch+json", {}, [1])
    assert exc.value.status == 400


@pytest.mark.parametrize(("selector", "expected"), [
    ("", {"a", "b", "c", "d"}),
    ("env=prod", {"a"}),
    ("env!=prod", {"b", "c", "d"}),
    ("env", {"a", "b"}),
    ("!env", {"c", "d"}),
    ("env in (prod, dev)", {"a", "b"}),
    ("env notin (prod)", {"b", "c", "d"}),
    ("env,tier=web", {"a"}),
    ("example.com/role=edge", {"c"}),
    ("tier in (web),!env", set()),
])
def test_label_selectors(selector: str, expected: set[str]) -> None:
    objs = {
        "a": {"env": "prod", "tier": "web"},
        "b": {"env": "dev"},
        "c": {"example.com/role": "edge", "tier": "db"},
        "d": {},
    }
    pred = parse_label_selector(selector)
    assert {name for name, labels in objs.items() if pred({"metadata": {"labels": labels}})} == expected


@pytest.mark.parametrize("bad", ["env in (", "env in ()", "!env=x", "=x", "env==", "a b"])
def test_bad_label_selectors(bad: str) -> None:
    if bad == "env==":  # an empty value is legal upstream: matches env=""
        assert parse_label_selector(bad)({"metadata": {"labels": {"env": ""}}})
        return
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_field_selectors() -> None:
    ev = {"metadata": {"name": "e", "namespace": "ns"}, "involvedObject": {"kind": "Node", "name": "n1"},
          "type": "Warning", "source": {"component": "routectl"}}
    assert parse_field_selector("involvedObject.kind=Node,involvedObject.name==n1", "events")(ev)
    assert parse_field_selector("type!=Normal,source=routectl", "events")(ev)
    assert not parse_field_selector("metadata.namespace=other", "events")(ev)
    assert parse_field_selector("spec.unschedulable=false", "nodes")({"spec": {}})
    with pytest.raises(SelectorError):
        parse_field_selector("involvedObject.kind=Node", "nodes")
    with pytest.raises(SelectorError):
        parse_field_selector("metadata.name", "nodes")


def test_jsonpath_subset_and_table_cells() -> None:
    obj = {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"cidrs": ["10.0.0.0/16", "fd00::/56"], "mask": 24},
           "status": {"conditions": [{"type": "Ready", "status": "True"},
                                     {"type": "Exhausted", "status": "False"}]}}
    assert jsonpath(obj, ".spec.mask") == [24]
    assert jsonpath(obj, "{.spec.cidrs[1]}") == ["fd00::/56"]
    assert jsonpath(obj, ".status.conditions[*].type") == ["Ready", "Exhausted"]
    assert jsonpath(obj, '.status.conditions[?(@.type=="Exhausted")].status') == ["False"]
    assert jsonpath(obj, ".spec.missing") == [] and jsonpath(obj, "bogus") == []
    t = table([obj], [{"name": "Mask", "type": "integer", "jsonPath": ".spec.mask"},
                      {"name": "CIDRs", "type": "string", "jsonPath": ".spec.cidrs"},
                      {"name": "Free", "type": "integer", "jsonPath": ".status.free"}], "pools", "7")
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Mask", "CIDRs", "Free", "Age"]
    cells = t["rows"][0]["cells"]
    assert cells[:4] == ["p", 24, '["10.0.0.0/16","fd00::/56"]', None] and cells[4].endswith("d")
    now = datetime.datetime(2026, 1, 1, 0, 2, 5, tzinfo=datetime.UTC)
    assert age("2026-01-01T00:00:00Z", now) == "2m" and age("2026-01-01T00:02:00Z", now) == "5s"
