"""The Kubernetes API emulator as the official client sees it: CRUD, conflicts, status split, selectors,
watches, finalizers and discovery — all over real HTTP."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import kubernetes
import pytest
from kubernetes.client import CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from routectl.sim.kube import KubeServer
from routectl.sim.kube_store import ApiError
from tests.sim.conftest import pool_crd

GROUP, VERSION, PLURAL = "routectl.io", "v1alpha1", "podcidrpools"


def node(name: str, labels: dict[str, str] | None = None, conditions: list[dict] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {}, "status": {"conditions": conditions or []}}


def _status(e: ApiException) -> dict[str, Any]:
    return json.loads(e.body)


def raw(kube: KubeServer, method: str, path: str, body: Any = None,
        content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    """A plain HTTP call (for patch types the generated client does not pick by itself)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{kube.url}{path}", data=data, method=method,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------------------------------- nodes
def test_node_crud_stamps_metadata_and_versions(kube: KubeServer, api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    created = core.create_node(node("n1", {"zone": "a"}))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp is not None
    assert meta.generation == 1
    rv1 = int(meta.resource_version)

    patched = core.patch_node("n1", {"spec": {"podCIDR": "10.0.1.0/24", "podCIDRs": ["10.0.1.0/24"]}})
    assert patched.spec.pod_cidrs == ["10.0.1.0/24"]
    assert int(patched.metadata.resource_version) > rv1
    assert patched.metadata.generation == 2  # spec changed

    labelled = core.patch_node("n1", {"metadata": {"labels": {"extra": "x"}}})
    assert labelled.metadata.generation == 2  # metadata-only change: generation unchanged
    assert labelled.metadata.labels == {"zone": "a", "extra": "x"}

    nodes = core.list_node()
    assert [n.metadata.name for n in nodes.items] == ["n1"]
    assert int(nodes.metadata.resource_version) >= int(labelled.metadata.resource_version)

    core.delete_node("n1")
    with pytest.raises(ApiException) as exc:
        core.read_node("n1")
    assert exc.value.status == 404
    body = _status(exc.value)
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert not kube.exists("v1", "Node", "n1")


def test_create_existing_name_is_409_already_exists(api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node(node("dup"))
    with pytest.raises(ApiException) as exc:
        core.create_node(node("dup"))
    assert exc.value.status == 409
    assert _status(exc.value)["reason"] == "AlreadyExists"


def test_malformed_bodies_are_rejected(kube: KubeServer, api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    with pytest.raises(ApiException) as exc:
        core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "Bad_Name"}})
    assert exc.value.status == 422 and _status(exc.value)["reason"] == "Invalid"
    core.create_node(node("n1"))
    for bad in ({"metadata": {"labels": {"bad key!": "x"}}}, {"metadata": {"labels": {"k": "x" * 64}}},
                {"metadata": {"finalizers": ["not a name"]}}, {"metadata": {"annotations": {"a": 1}}},
                {"spec": ["not", "an", "object"]}):
        with pytest.raises(ApiException) as exc:
            core.patch_node("n1", bad)
        assert exc.value.status == 422, bad
    with pytest.raises(ApiException) as exc:
        core.patch_node("n1", {"spec": {"podCIDRs": ["10.0.0.1/24"]}})  # host bits set
    assert exc.value.status == 422
    core.patch_node("n1", {"spec": {"podCIDRs": ["10.0.0.0/24"]}})
    with pytest.raises(ApiException) as exc:  # podCIDR is immutable once set, as upstream
        core.patch_node("n1", {"spec": {"podCIDR": "10.0.9.0/24", "podCIDRs": ["10.0.9.0/24"]}})
    assert exc.value.status == 422 and "may not change podCIDR" in _status(exc.value)["message"]
    req = urllib.request.Request(f"{kube.url}/api/v1/nodes", data=b"{not json", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req)
    assert http.value.code == 400


def test_stale_resource_version_conflicts(kube: KubeServer, api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    first = core.create_node(node("n1"))
    stale = first.metadata.resource_version
    core.patch_node("n1", {"metadata": {"labels": {"a": "1"}}})

    with pytest.raises(ApiException) as exc:  # merge patch carrying a stale resourceVersion
        core.patch_node("n1", {"metadata": {"resourceVersion": stale, "labels": {"b": "2"}}})
    assert exc.value.status == 409 and _status(exc.value)["reason"] == "Conflict"

    current = core.read_node("n1")
    current.metadata.resource_version = stale
    with pytest.raises(ApiException) as exc:  # PUT with a stale resourceVersion
        core.replace_node("n1", current)
    assert exc.value.status == 409

    fresh = core.read_node("n1")
    fresh.metadata.labels["c"] = "3"
    replaced = core.replace_node("n1", fresh)  # PUT with the current one succeeds
    assert replaced.metadata.labels == {"a": "1", "c": "3"}

    # JSON patch with a failing "test" op: kube-apiserver answers 422 (kopf relies on exactly that).
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": stale},
           {"op": "add", "path": "/metadata/labels/d", "value": "4"}]
    code, body = raw(kube, "PATCH", "/api/v1/nodes/n1", ops, "application/json-patch+json")
    assert code == 422 and body["reason"] == "Invalid" and "testing value" in body["message"]
    ops[0]["value"] = replaced.metadata.resource_version
    core.patch_node("n1", ops)  # the client picks json-patch for a list body
    assert core.read_node("n1").metadata.labels["d"] == "4"


def test_node_status_split_and_strategic_merge_keeps_other_conditions(
        api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    kubelet_conditions = [
        {"type": "Ready", "status": "True", "reason": "KubeletReady"},
        {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"},
    ]
    core.create_node(node("n1", conditions=kubelet_conditions))  # nodes keep status on create

    ignored = core.patch_node("n1", {"status": {"conditions": []}, "metadata": {"labels": {"x": "y"}}})
    assert [c.type for c in ignored.status.conditions] == ["Ready", "NetworkUnavailable"]

    patched = core.patch_node_status("n1", {"status": {"conditions": [
        {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}]}})
    by_type = {c.type: c for c in patched.status.conditions}
    assert set(by_type) == {"Ready", "NetworkUnavailable"}
    assert by_type["Ready"].reason == "KubeletReady"
    assert (by_type["NetworkUnavailable"].status, by_type["NetworkUnavailable"].reason) == ("False",
                                                                                           "RouteCreated")
    assert patched.metadata.generation == 1  # status writes never bump generation

    # Writes through /status change nothing but .status.
    address = {"type": "InternalIP", "address": "10.1.1.1"}
    after = core.patch_node_status("n1", {"metadata": {"labels": {"sneaky": "1"}},
                                          "spec": {"unschedulable": True},
                                          "status": {"addresses": [address]}})
    assert "sneaky" not in after.metadata.labels and not after.spec.unschedulable
    assert after.status.addresses[0].address == "10.1.1.1"


def test_strategic_merge_on_finalizers_labels_and_pod_cidrs(kube: KubeServer,
                                                            api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node(node("n1", {"keep": "1"}))

    def smp_patch(body: dict) -> dict:
        code, out = raw(kube, "PATCH", "/api/v1/nodes/n1", body, "application/strategic-merge-patch+json")
        assert code == 200, out
        return out

    smp_patch({"metadata": {"finalizers": ["a/one"], "labels": {"new": "2"}}})
    out = smp_patch({"metadata": {"finalizers": ["b/two"], "annotations": {"note": "n"}}})
    assert out["metadata"]["finalizers"] == ["a/one", "b/two"]  # merged as a set, like upstream
    assert out["metadata"]["labels"] == {"keep": "1", "new": "2"}
    out = smp_patch({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/one"],
                                  "labels": {"keep": None}}})
    assert out["metadata"]["finalizers"] == ["b/two"] and out["metadata"]["labels"] == {"new": "2"}
    out = smp_patch({"spec": {"podCIDR": "10.2.0.0/24", "podCIDRs": ["10.2.0.0/24"],
                              "taints": [{"key": "k", "effect": "NoSchedule"}]}})
    out = smp_patch({"spec": {"taints": [{"key": "other", "effect": "NoExecute"}]}})
    assert out["spec"]["podCIDRs"] == ["10.2.0.0/24"]
    assert [t["key"] for t in out["spec"]["taints"]] == ["other"]  # non-merge lists are replaced


# --------------------------------------------------------------------------------------- selectors
def test_label_and_field_selectors_on_list(api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node(node("a", {"pool": "blue", "zone": "z1"}))
    core.create_node(node("b", {"pool": "green", "zone": "z2"}))
    core.create_node(node("c", {"zone": "z1"}))

    def names(**kw: str) -> list[str]:
        return [n.metadata.name for n in core.list_node(**kw).items]

    assert names(label_selector="pool=blue") == ["a"]
    assert names(label_selector="pool==blue") == ["a"]
    assert names(label_selector="pool!=blue") == ["b", "c"]  # includes objects without the key
    assert names(label_selector="pool") == ["a", "b"]
    assert names(label_selector="!pool") == ["c"]
    assert names(label_selector="pool in (blue,green)") == ["a", "b"]
    assert names(label_selector="pool notin (blue)") == ["b", "c"]
    assert names(label_selector="zone=z1,pool") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    with pytest.raises(ApiException) as exc:
        core.list_node(field_selector="spec.bogus=1")
    assert exc.value.status == 400
    with pytest.raises(ApiException) as exc:
        core.list_node(label_selector="pool in (")
    assert exc.value.status == 400


def test_namespaced_field_selector_and_events(kube: KubeServer, api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_event("default", {
        "metadata": {"generateName": "ev-"}, "reason": "CIDRAssigned",
        "involvedObject": {"kind": "Node", "name": "n1"}, "type": "Normal"})
    core.create_namespaced_event("other", {
        "metadata": {"generateName": "ev-"}, "reason": "Started",
        "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "other"}, "type": "Normal"})
    every = core.list_event_for_all_namespaces(field_selector="metadata.namespace=other")
    assert [e.metadata.namespace for e in every.items] == ["other"]
    assert every.items[0].metadata.name.startswith("ev-")
    assert len(core.list_namespaced_event("default", field_selector="involvedObject.name=n1").items) == 1
    with pytest.raises(ApiException) as exc:  # a cluster-scoped object's Event outside "default"
        core.create_namespaced_event("other", {"metadata": {"name": "x"}, "reason": "CIDRAssigned",
                                               "involvedObject": {"kind": "Node", "name": "n1"}})
    assert exc.value.status == 422
    assert _status(exc.value)["message"] == ('Event "x" is invalid: involvedObject.namespace: Invalid value: '
                                             '"": does not match event.namespace')
    posted = core.list_namespaced_event("default").items[0].metadata.name
    with pytest.raises(ApiException) as exc:  # an update that breaks the rule is refused too
        core.replace_namespaced_event(posted, "default", {"metadata": {"name": posted}, "involvedObject": {
            "kind": "Pod", "name": "p1", "namespace": "other"}})
    assert exc.value.status == 422
    # New-style Events (eventTime set) of cluster-scoped objects may also live in kube-system.
    core.create_namespaced_event("kube-system", {
        "metadata": {"name": "new-style"}, "involvedObject": {"kind": "Node", "name": "n1"},
        "eventTime": "2026-12-02T00:00:00.000000Z", "reportingComponent": "routectl",
        "reportingInstance": "i", "action": "Assign", "reason": "CIDRAssigned"})
    with pytest.raises(ApiException) as exc:  # ... but old-style ones not
        core.create_namespaced_event("kube-system", {"metadata": {"name": "old-style"},
                                                     "involvedObject": {"kind": "Node", "name": "n1"}})
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:  # an Event lives with its (namespaced) object, as upstream
        core.create_namespaced_event("default", {"metadata": {"name": "x"},
                                                 "involvedObject": {"kind": "Pod", "namespace": "other"}})
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:  # namespaces must exist, as with NamespaceLifecycle
        core.create_namespaced_event("missing", {"metadata": {"name": "e"}, "involvedObject": {}})
    assert exc.value.status == 404


def test_watch_with_selectors_resource_version_and_transitions(api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node(node("before", {"pool": "blue"}))
    listed = core.list_node(label_selector="pool=blue")
    since = listed.metadata.resource_version

    core.create_node(node("blue-1", {"pool": "blue"}))
    core.create_node(node("green-1", {"pool": "green"}))
    core.patch_node("blue-1", {"metadata": {"labels": {"pool": "green"}}})  # leaves the selection
    core.patch_node("green-1", {"metadata": {"labels": {"pool": "blue"}}})  # enters the selection
    core.delete_node("green-1")

    w = kubernetes.watch.Watch()
    seen = []
    for event in w.stream(core.list_node, label_selector="pool=blue", resource_version=since,
                          allow_watch_bookmarks=True, timeout_seconds=1):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "blue-1"), ("DELETED", "blue-1"), ("ADDED", "green-1"), ("DELETED", "green-1")]

    # Without a resourceVersion, the watch starts with the current state, filtered by field selector.
    seen = [(e["type"], e["object"].metadata.name) for e in w.stream(
        core.list_node, field_selector="metadata.name=before", timeout_seconds=1)]
    assert seen == [("ADDED", "before")]


def test_live_watch_sees_changes_from_another_thread(kube: KubeServer,
                                                     api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    since = core.list_node().metadata.resource_version
    events: list[tuple[str, str]] = []
    started = threading.Event()

    def watch() -> None:
        w = kubernetes.watch.Watch()
        started.set()
        for event in w.stream(core.list_node, resource_version=since, timeout_seconds=5):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watch)
    t.start()
    started.wait()
    kube.create(node("live"))
    kube.patch("v1", "Node", "live", {"metadata": {"labels": {"a": "b"}}})
    kube.delete("v1", "Node", "live")
    t.join(timeout=10)
    assert events == [("ADDED", "live"), ("MODIFIED", "live"), ("DELETED", "live")]


def test_watch_from_a_compacted_resource_version_is_410_gone() -> None:
    with KubeServer(history_size=3) as kube:
        for i in range(6):
            kube.create(node(f"n{i}"))
        url = f"{kube.url}/api/v1/nodes?watch=true&resourceVersion=1&timeoutSeconds=1"
        lines = urllib.request.urlopen(url).read().decode().splitlines()
        event = json.loads(lines[0])
        assert event["type"] == "ERROR" and event["object"]["code"] == 410


# --------------------------------------------------------------------------------------- finalizers
def test_finalizers_defer_deletion_until_removed(kube: KubeServer, api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node({"metadata": {"name": "n1", "finalizers": ["example.com/hold"]}})
    since = core.list_node().metadata.resource_version
    core.delete_node("n1")
    marked = core.read_node("n1")
    assert marked.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as exc:  # no new finalizers once deletion started
        core.patch_node("n1", {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}})
    assert exc.value.status == 422
    core.patch_node("n1", {"metadata": {"finalizers": None}})
    assert not kube.exists("v1", "Node", "n1")
    w = kubernetes.watch.Watch()
    types = [e["type"] for e in w.stream(core.list_node, resource_version=since, timeout_seconds=1)]
    assert types == ["MODIFIED", "DELETED"]


def test_delete_preconditions_conflict(api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node(node("n1"))
    with pytest.raises(ApiException) as exc:
        core.delete_node("n1", body=kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(resource_version="1")))
    assert exc.value.status == 409


# --------------------------------------------------------------------------------------------- CRDs
def test_crd_installed_at_runtime_is_discoverable_and_servable(kube: KubeServer,
                                                               api: kubernetes.client.ApiClient) -> None:
    custom = CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert exc.value.status == 404

    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(pool_crd())
    groups = {g.name: g for g in kubernetes.client.ApisApi(api).get_api_versions().groups}
    assert groups[GROUP].preferred_version.version == VERSION
    rows = {r.name: r for r in custom.get_api_resources(GROUP, VERSION).resources}
    assert rows[PLURAL].namespaced is False and rows[PLURAL].kind == "PodCIDRPool"
    assert set(rows) == {PLURAL, f"{PLURAL}/status"}
    core_rows = {r.name: r for r in CoreV1Api(api).get_api_resources().resources}
    assert core_rows["nodes"].namespaced is False and "nodes/status" in core_rows
    assert core_rows["events"].namespaced is True

    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PodCIDRPool", "metadata": {"name": "p1"},
            "spec": {"cidrs": ["10.0.0.0/16"], "nodeMaskSizeIPv4": 24}, "status": {"ignored": True}}
    created = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert "status" not in created  # status is a subresource: dropped on create
    assert created["metadata"]["generation"] == 1

    with_status = custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, "p1",
                                                             {"status": {"allocated": 3}})
    assert with_status["status"] == {"allocated": 3}
    assert with_status["metadata"]["generation"] == 1
    spec_changed = custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "p1",
                                                      {"spec": {"nodeMaskSizeIPv4": 26}, "status": None})
    assert spec_changed["metadata"]["generation"] == 2
    assert spec_changed["status"] == {"allocated": 3}  # main-resource writes ignore .status

    with pytest.raises(ApiException) as exc:  # schema validation (openAPIV3Schema)
        custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "p1", {"spec": {"nodeMaskSizeIPv4": 2}})
    assert exc.value.status == 422

    listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector="!missing")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["p1"]
    assert kube.get(f"{GROUP}/{VERSION}", "PodCIDRPool", "p1")["spec"]["nodeMaskSizeIPv4"] == 26
    assert kube.list(f"{GROUP}/{VERSION}", "pcp") == [kube.get(f"{GROUP}/{VERSION}", "podcidrpools", "p1")]


def test_install_crd_helper_and_delete_removes_resources(kube: KubeServer) -> None:
    kube.install_crd(pool_crd())
    kube.install_crd(pool_crd())  # idempotent
    kube.create({"apiVersion": f"{GROUP}/{VERSION}", "kind": "PodCIDRPool", "metadata": {"name": "p"},
                 "spec": {"cidrs": []}})
    kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"{PLURAL}.{GROUP}")
    with pytest.raises(ApiError) as exc:
        kube.list(f"{GROUP}/{VERSION}", "PodCIDRPool")
    assert exc.value.code == 404
    apis = json.loads(urllib.request.urlopen(f"{kube.url}/apis").read())
    assert GROUP not in {g["name"] for g in apis["groups"]}


# ---------------------------------------------------------------------------------------- the log
def test_request_log_counts_writes_per_resource(kube: KubeServer, api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node(node("n1"))
    mark = kube.requests.mark()
    core.read_node("n1")
    core.list_node()
    assert kube.requests.count(resource="nodes", writes=True, since=mark) == 0
    core.patch_node_status("n1", {"status": {"conditions": []}})
    writes = kube.requests.select(resource="nodes", writes=True, since=mark)
    assert [(r.verb, r.subresource, r.status) for r in writes] == [("patch", "status", 200)]
    assert kube.requests.counters(since=mark)[("get", "nodes", None)] == 1
    kube.patch("v1", "Node", "n1", {"metadata": {"labels": {"direct": "1"}}})  # helpers bypass HTTP
    assert kube.requests.count(resource="nodes", writes=True, since=mark) == 1


def test_kubectl_facing_behaviour(kube: KubeServer) -> None:
    kube.install_crd(pool_crd())
    base = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
    pool = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PodCIDRPool", "metadata": {"name": "p"},
            "spec": {"cidrs": ["10.0.0.0/16"], "typo": 1}}
    code, body = raw(kube, "POST", f"{base}?fieldValidation=Strict", pool)
    assert code == 400 and 'unknown field "spec.typo"' in body["message"]
    code, body = raw(kube, "POST", base, pool)  # default: pruned silently
    assert code == 201 and "typo" not in body["spec"]
    code, _ = raw(kube, "PATCH", f"{base}/p", {"spec": {"cidrs": []}},
                  "application/strategic-merge-patch+json")
    assert code == 415  # custom resources do not take strategic merge patches, as upstream
    code, body = raw(kube, "DELETE", f"{base}/p?dryRun=All")
    assert code == 400 and "dryRun" in body["message"] and kube.exists(f"{GROUP}/{VERSION}", "pcp", "p")
    code, body = raw(kube, "GET", "/openapi/v3")
    assert code == 200 and f"apis/{GROUP}/{VERSION}" in body["paths"]
    code, doc = raw(kube, "GET", body["paths"][f"apis/{GROUP}/{VERSION}"]["serverRelativeURL"])
    op = doc["paths"][f"{base}/{{name}}"]["patch"]
    assert op["x-kubernetes-group-version-kind"]["kind"] == "PodCIDRPool"
    assert [p["name"] for p in op["parameters"]] == ["fieldValidation"]


def test_injected_faults_and_failed_writes_are_logged(kube: KubeServer,
                                                      api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_node(node("n1"))
    fault = kube.inject_fault("patch", "nodes", subresource="status", code=429, retry_after=1, times=1)
    mark = kube.requests.mark()
    code, body = raw(kube, "PATCH", "/api/v1/nodes/n1/status", {"status": {"phase": "x"}},
                     "application/merge-patch+json")
    assert code == 429 and body["reason"] == "TooManyRequests" and fault.hits == 1
    code, _ = raw(kube, "PATCH", "/api/v1/nodes/n1/status", {"status": {"phase": "x"}},
                  "application/merge-patch+json")
    assert code == 200  # the fault was used up
    stale = {"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}}
    with pytest.raises(ApiException):
        core.patch_node("n1", stale)
    records = kube.requests.select(resource="nodes", writes=True, since=mark)
    assert [(r.verb, r.subresource, r.status) for r in records] == [
        ("patch", "status", 429), ("patch", "status", 200), ("patch", None, 409)]
    kube.inject_fault("get", "nodes", code=503, times=None)
    with pytest.raises(ApiException) as exc:
        core.read_node("n1")
    assert exc.value.status == 503
    kube.clear_faults()
    assert core.read_node("n1").metadata.name == "n1"


def test_live_watch_is_logged_while_open(kube: KubeServer) -> None:
    with urllib.request.urlopen(f"{kube.url}/api/v1/nodes?watch=true&timeoutSeconds=5"):
        records = kube.requests.select(verb="watch", resource="nodes")
        assert len(records) == 1 and records[0].status == 0  # still streaming
    code, _ = raw(kube, "POST", "/api/v1/events", {"metadata": {"name": "e", "namespace": "default"}})
    assert code == 405  # namespaced kinds are created under /namespaces/<ns>/, as upstream


def test_table_form_uses_crd_printer_columns(kube: KubeServer) -> None:
    crd = pool_crd()
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Mask", "type": "integer", "jsonPath": ".spec.nodeMaskSizeIPv4"}]
    kube.install_crd(crd)
    kube.create({"apiVersion": f"{GROUP}/{VERSION}", "kind": "PodCIDRPool", "metadata": {"name": "p"},
                 "spec": {"cidrs": [], "nodeMaskSizeIPv4": 26}})
    req = urllib.request.Request(f"{kube.url}/apis/{GROUP}/{VERSION}/{PLURAL}", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    body = json.loads(urllib.request.urlopen(req).read())
    assert body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Mask", "Age"]
    assert body["rows"][0]["cells"][:2] == ["p", 26]
    assert body["rows"][0]["object"]["metadata"]["name"] == "p"


def test_namespace_deletion_waits_for_finalized_content(kube: KubeServer,
                                                        api: kubernetes.client.ApiClient) -> None:
    core = CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "plain"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "held", "finalizers": ["x/y"]}})
    core.delete_namespace("team")
    assert core.read_namespace("team").status.phase == "Terminating"
    assert [c.metadata.name for c in core.list_namespaced_config_map("team").items] == ["held"]
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("team", {"metadata": {"name": "late"}})
    assert exc.value.status == 403
    core.patch_namespaced_config_map("held", "team", {"metadata": {"finalizers": None}})
    assert not kube.exists("v1", "Namespace", "team")


def test_custom_resource_put_needs_resource_version(kube: KubeServer,
                                                    api: kubernetes.client.ApiClient) -> None:
    kube.install_crd(pool_crd())
    custom = CustomObjectsApi(api)
    obj = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "PodCIDRPool", "metadata": {"name": "p"},
        "spec": {"cidrs": []}})
    del obj["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "p", obj)
    assert exc.value.status == 422
