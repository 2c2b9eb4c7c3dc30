"""The agent's all-Nodes cache against the Kubernetes API emulator: one LIST, then a WATCH; re-list on 410."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from routectl.agent.kube import KubeSource, load_api_client
from routectl.agent.nodecache import NodeCache
from routectl.constants import TRANSPORT_ANNOTATION, TRANSPORT_OVERLAY
from routectl.sim.kube import KubeServer


def node(name: str, cidr: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer() as server:
        for i, name in enumerate(("node-a", "node-b", "node-c"), start=1):
            server.create(node(name, f"10.244.{i}.0/24", f"10.0.0.{10 + i}"))
        yield server


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def node_lists(kube: KubeServer, since: int = 0) -> int:
    return kube.requests.count(verb="list", resource="nodes", since=since)


def transport(nodes: list[dict], name: str) -> str | None:
    found = next(n for n in nodes if n["metadata"]["name"] == name)
    return (found["metadata"].get("annotations") or {}).get(TRANSPORT_ANNOTATION)


def overlay_patch() -> dict:
    return {"metadata": {"annotations": {TRANSPORT_ANNOTATION: TRANSPORT_OVERLAY}}}


def test_many_syncs_list_nodes_once_and_changes_arrive_by_watch(kube: KubeServer,
                                                                stop: threading.Event) -> None:
    src = KubeSource(load_api_client(kube.kubeconfig_path), "node-a", watch_all_nodes=True)
    trigger = threading.Event()
    src.start_watches(trigger, stop)
    try:
        for _ in range(5):
            assert {n["metadata"]["name"] for n in src.list_nodes()} == {"node-a", "node-b", "node-c"}
        assert node_lists(kube) == 1
        assert src.node_cache is not None
        wait_for(lambda: kube.requests.count(verb="watch", resource="nodes", name=None) >= 1, "the watch")
        trigger.clear()
        kube.patch("v1", "Node", "node-b", overlay_patch())
        wait_for(lambda: transport(src.list_nodes(), "node-b") == TRANSPORT_OVERLAY, "node-b via the watch")
        assert trigger.is_set()  # a change the overlay uses wakes the agent's loop
        kube.delete("v1", "Node", "node-c")
        wait_for(lambda: len(src.list_nodes()) == 2, "node-c's deletion via the watch")
        assert node_lists(kube) == 1
    finally:
        src.stop_watches()


def test_without_running_watches_list_nodes_is_a_plain_list(kube: KubeServer) -> None:
    """`--once`: nothing keeps a cache current, so every call reads fresh (and starts no thread)."""
    src = KubeSource(load_api_client(kube.kubeconfig_path), "node-a", watch_all_nodes=True)
    assert len(src.list_nodes()) == 3 and src.node_cache is None and node_lists(kube) == 1


def test_watches_without_the_overlay_list_no_nodes(kube: KubeServer, stop: threading.Event) -> None:
    """Only the own Node is watched (by field selector) until the overlay first asks for every Node."""
    src = KubeSource(load_api_client(kube.kubeconfig_path), "node-a", watch_all_nodes=True)
    src.start_watches(threading.Event(), stop)
    try:
        wait_for(lambda: kube.requests.count(verb="watch", resource="nodes") >= 1, "the own-Node watch")
        watches = kube.requests.select(verb="watch", resource="nodes")
        assert node_lists(kube) == 0 and src.node_cache is None
        assert all("metadata.name=node-a" in r.query.get("fieldSelector", "") for r in watches)
    finally:
        src.stop_watches()


def test_410_in_the_stream_leads_to_one_relist(kube: KubeServer, stop: threading.Event) -> None:
    """The watch cannot resume (history compacted past its resourceVersion): one LIST, and nothing missed."""
    cache = NodeCache(client.CoreV1Api(load_api_client(kube.kubeconfig_path)),
                      watch_seconds=1)
    cache.start(stop)
    hold = kube.hold_watch("nodes")  # the live stream will not see the change below
    kube.patch("v1", "Node", "node-b", overlay_patch())
    kube.call(lambda s: setattr(s, "history_floor", s.rv))  # resuming from before it: 410 Gone
    wait_for(lambda: transport(cache.nodes(), "node-b") == TRANSPORT_OVERLAY, "node-b after the re-list")
    hold.release()
    assert node_lists(kube) == 2 and cache.lists == 2
    kube.patch("v1", "Node", "node-c", overlay_patch())  # and the watch goes on from the new list
    wait_for(lambda: transport(cache.nodes(), "node-c") == TRANSPORT_OVERLAY, "node-c via the watch")
    assert node_lists(kube) == 2
    cache.close()


@pytest.mark.parametrize(("code", "lists"), [(410, 2), (500, 1)])
def test_http_watch_errors(kube: KubeServer, stop: threading.Event, code: int, lists: int) -> None:
    """An HTTP 410 on the watch request re-lists once; any other error resumes the watch after a backoff."""
    fault = kube.inject_fault(verb="watch", resource="nodes", code=code, times=1)
    cache = NodeCache(client.CoreV1Api(load_api_client(kube.kubeconfig_path)))
    cache.start(stop)
    wait_for(lambda: fault.hits == 1, "the fault")
    kube.patch("v1", "Node", "node-b", overlay_patch())
    wait_for(lambda: transport(cache.nodes(), "node-b") == TRANSPORT_OVERLAY, "node-b via the watch")
    assert node_lists(kube) == lists
    cache.close()


def test_a_failed_first_list_fails_the_sync_and_the_next_one_lists_again(kube: KubeServer,
                                                                         stop: threading.Event) -> None:
    """Never an empty cache served as "no Nodes" (that would tear the overlay down): the error surfaces."""
    src = KubeSource(load_api_client(kube.kubeconfig_path), "node-a", watch_all_nodes=True)
    src.start_watches(threading.Event(), stop)
    try:
        kube.inject_fault(verb="list", resource="nodes", code=500, times=1)
        with pytest.raises(client.ApiException):
            src.list_nodes()
        assert len(src.list_nodes()) == 3 and node_lists(kube) == 2
    finally:
        src.stop_watches()
