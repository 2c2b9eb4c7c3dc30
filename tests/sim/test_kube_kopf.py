"""The REAL kopf operator (in-process, ``kopf.operator``) against the Kubernetes API emulator over HTTP.

Covers what routectl's controller relies on: login from the emulator's kubeconfig, Node watch and
patch, an ``@kopf.index``, a cluster-scoped custom resource with kopf's finalizer (added by a JSON patch
that tests resourceVersion) and status written through the /status subresource, and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import kopf
import pytest

from routectl.sim.kube import KubeServer
from routectl.sim.kube_store import ApiError
from tests.sim.conftest import pool_crd

POOLS = ("routectl.io", "v1alpha1", "podcidrpools")


async def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (no wall-clock assertions: only a generous cap)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        with contextlib.suppress(ApiError, KeyError):
            last = check()
            if last:
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def build_registry(deleted: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)  # reads $KUBECONFIG written by KubeServer

    @kopf.index("v1", "nodes", id="node_cidrs", registry=registry)
    def node_cidrs(name: str, spec: kopf.Spec, **_: Any) -> dict[str, str] | None:
        return {spec["podCIDR"]: name} if spec.get("podCIDR") else None

    @kopf.on.create("v1", "nodes", registry=registry)
    def node_created(name: str, body: kopf.Body, patch: kopf.Patch, node_cidrs: kopf.Index, **_: Any) -> None:
        patch.metadata.labels["routectl.io/seen"] = "yes"
        patch.metadata.annotations["routectl.io/known-cidrs"] = ",".join(sorted(node_cidrs))
        kopf.event(body, type="Normal", reason="NodeSeen", message=f"saw {name}")

    @kopf.on.create(*POOLS, id="pool_created", registry=registry)
    def pool_created(spec: kopf.Spec, **_: Any) -> dict[str, Any]:
        return {"blocks": len(spec.get("cidrs", []))}  # kopf writes it to status.pool_created

    @kopf.on.delete(*POOLS, registry=registry)
    def pool_deleted(name: str, **_: Any) -> None:
        deleted.append(name)

    return registry


def node(name: str, cidr: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


async def test_real_kopf_operator_against_the_emulator(kube: KubeServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig_path)
    kube.install_crd(pool_crd())
    kube.create(node("n1", "10.0.1.0/24"))

    deleted: list[str] = []
    settings = kopf.OperatorSettings()
    settings.posting.level = 0
    settings.watching.server_timeout = 1  # the server ends watches every second: kopf must resume from rv
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=build_registry(deleted), settings=settings, clusterwide=True, standalone=True,
        stop_flag=stop, ready_flag=ready))
    try:
        await asyncio.wait_for(ready.wait(), timeout=20)

        # (1)+(2) a pre-existing Node is seen and patched.
        n1 = await eventually(
            lambda: kube.get("v1", "Node", "n1")["metadata"]["labels"].get("routectl.io/seen"),
            what="n1 patched by kopf")
        assert n1 == "yes"

        # The server closed kopf's first Node watch; kopf resumed from its resourceVersion and still
        # sees what happens next.
        await eventually(lambda: kube.requests.count(verb="watch", resource="nodes") >= 2, what="re-watch")
        resumed = kube.requests.select(verb="watch", resource="nodes")[-1]
        assert int(resumed.query["resourceVersion"]) > 0

        # (3) the index holds every node: a later node's handler sees both CIDRs.
        kube.create(node("n2", "10.0.2.0/24"))
        known = await eventually(
            lambda: kube.get("v1", "Node", "n2")["metadata"]["annotations"]["routectl.io/known-cidrs"],
            what="n2 annotated")
        assert known == "10.0.1.0/24,10.0.2.0/24"

        # (4) a cluster-scoped custom resource: finalizer (JSON patch + resourceVersion test), status.
        kube.create({"apiVersion": "routectl.io/v1alpha1", "kind": "PodCIDRPool", "metadata": {"name": "p1"},
                     "spec": {"cidrs": ["10.0.0.0/16"]}})
        status = await eventually(lambda: kube.get("routectl.io/v1alpha1", "PodCIDRPool", "p1")
                                  .get("status", {}).get("pool_created"), what="pool status written")
        assert status == {"blocks": 1}
        pool = kube.get("routectl.io/v1alpha1", "PodCIDRPool", "p1")
        assert pool["metadata"]["finalizers"] == [settings.persistence.finalizer]
        assert pool["metadata"]["generation"] == 1  # kopf's writes touched metadata and status only
        assert kube.requests.count(resource="podcidrpools", subresource="status", writes=True) >= 1

        kube.delete("routectl.io/v1alpha1", "PodCIDRPool", "p1")
        await eventually(lambda: not kube.exists("routectl.io/v1alpha1", "PodCIDRPool", "p1"),
                         what="pool released by kopf")
        assert deleted == ["p1"]

        # (5) Events posted by kopf for cluster-scoped objects land in "default".
        events = await eventually(lambda: [e for e in kube.list("v1", "Event", "default")
                                           if e.get("reason") == "NodeSeen"], what="events")
        assert {e["involvedObject"]["name"] for e in events} == {"n1", "n2"}

        # kopf never wrote Node status (no handler asked it to): the split held.
        assert kube.requests.count(resource="nodes", subresource="status", writes=True) == 0
        assert kube.get("v1", "Node", "n1")["status"]["conditions"][0]["reason"] == "KubeletReady"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def test_kopf_peering_through_the_emulated_peering_crd(kube: KubeServer) -> None:
    kube.install_kopf_peering_crds()
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "routectl"}})
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=kube.url)

    @kopf.on.create("v1", "nodes", id="mark", registry=registry)
    def mark(patch: kopf.Patch, **_: Any) -> None:
        patch.metadata.labels["marked"] = "yes"

    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(registry=registry, clusterwide=True, peering_name="routectl",
                                             priority=7, stop_flag=stop))
    try:
        peers = await eventually(
            lambda: kube.get("kopf.dev/v1", "ClusterKopfPeering", "routectl").get("status"), what="peering")
        assert [p["priority"] for p in peers.values()] == [7]
        kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})
        await eventually(lambda: kube.get("v1", "Node", "n")["metadata"]["labels"].get("marked"),
                         what="node handled while peered")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
    # On a clean exit kopf removes itself from the peering object.
    assert not kube.get("kopf.dev/v1", "ClusterKopfPeering", "routectl").get("status")
