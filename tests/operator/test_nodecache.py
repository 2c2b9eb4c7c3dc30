"""NodeCache: one paginated LIST of Nodes against the API emulator, then events ordered by resourceVersion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from routectl.controller.kube import KubeClient
from routectl.controller.nodecache import NodeCache
from routectl.controller.state import IndexViews
from routectl.sim.cluster import kubelet_node
from routectl.sim.kube import KubeServer


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer() as server:
        yield server


def _node(kube: KubeServer, name: str, cidr: str | None = None) -> dict[str, Any]:
    body = kubelet_node(name, f"gce://p/z/{name}", "z")
    if cidr:
        body["spec"].update(podCIDR=cidr, podCIDRs=[cidr])
    return kube.create(body)


def _with_rv(body: dict[str, Any], rv: int) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "resourceVersion": str(rv)}}


async def _loaded(kube: KubeServer, page_size: int = 3) -> NodeCache:
    client = KubeClient(kube.url)
    cache = NodeCache(client, page_size=page_size)
    await cache.ready()
    await client.close()
    return cache


def test_one_paginated_list_gives_every_node_in_the_kopf_index_shape(kube: KubeServer) -> None:
    for i in range(7):
        _node(kube, f"n{i}", f"10.0.{i}.0/24" if i % 2 else None)
    cache = asyncio.run(_loaded(kube))
    assert cache.loaded and cache.lists == 3  # 7 nodes in pages of 3
    assert sorted(cache) == [f"n{i}" for i in range(7)]
    # what the Controller reads: name -> the node's view, live (no copy per read)
    views = IndexViews()
    views.node_map = cache
    assert views.node_views() is cache
    assert cache["n3"].pod_cidrs == ("10.0.3.0/24",) and cache["n2"].pod_cidrs == ()
    assert cache["n1"].provider_id == "gce://p/z/n1" and "n1" in cache and "zz" not in cache


def test_events_apply_in_resource_version_order(kube: KubeServer) -> None:
    a = _node(kube, "a")
    b = _node(kube, "b", "10.0.9.0/24")
    cache = asyncio.run(_loaded(kube))
    rv = int(b["metadata"]["resourceVersion"])
    stale = {**a, "spec": {**a["spec"], "podCIDR": "10.9.9.0/24"}}
    cache.apply(None, _with_rv(stale, int(a["metadata"]["resourceVersion"]) - 1))  # older than the LIST
    assert cache["a"].pod_cidrs == ()
    cache.apply("MODIFIED", _with_rv(stale, rv + 5))
    assert cache["a"].pod_cidrs == ("10.9.9.0/24",)
    ghost = kubelet_node("ghost", "gce://p/z/ghost", "z")
    cache.apply(None, _with_rv(ghost, 1))  # absent from a newer LIST: deleted since, not resurrected
    assert "ghost" not in cache
    cache.apply("ADDED", _with_rv(ghost, rv + 10))  # created after the LIST
    assert "ghost" in cache
    cache.apply("DELETED", _with_rv(b, rv + 11))
    assert "b" not in cache and len(cache) == 2


def test_a_deletion_seen_while_listing_is_not_undone_by_the_list(kube: KubeServer) -> None:
    body = _node(kube, "x", "10.0.1.0/24")
    _node(kube, "y")

    async def go() -> NodeCache:
        client = KubeClient(kube.url)
        cache = NodeCache(client, page_size=1)
        cache.apply("DELETED", _with_rv(body, int(body["metadata"]["resourceVersion"]) + 100))
        await cache.ready()
        await client.close()
        return cache

    cache = asyncio.run(go())
    assert sorted(cache) == ["y"]


def test_the_list_is_retried_until_it_succeeds(kube: KubeServer) -> None:
    _node(kube, "n")
    fault = kube.inject_fault("list", "nodes", code=403, times=2)
    cache = asyncio.run(_loaded(kube))
    assert fault.hits == 2 and sorted(cache) == ["n"]


def test_a_new_leader_occupies_every_existing_podcidr_from_the_list_before_serving(make_sim: Any) -> None:
    sim = make_sim(cloud="gce", nodes=0, run_controller=False)
    old = sim.add_nodes(40)
    for i, name in enumerate(old):  # blocks a previous leader wrote, in the order it would hand them out
        cidr = f"10.244.{i}.0/24"
        sim.kube.patch("v1", "Node", name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
    new = sim.add_nodes(10)
    mark = sim.kube.requests.mark()
    sim.start_controller()
    assert sim.wait_converged(90)
    # the controller's own LIST of every Node came before its first write to any Node
    ours = [r for r in sim.kube.requests.select(resource="nodes", since=mark)
            if r.user_agent.startswith("routectl/")]
    first_write = next(i for i, r in enumerate(ours) if r.is_write)
    assert any(r.verb == "list" for r in ours[:first_write]), "blocks were handed out before the Node LIST"
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in sim.nodes()}
    assert [cidrs[n] for n in old] == [f"10.244.{i}.0/24" for i in range(40)]
    assert len(set(cidrs.values())) == 50, "a block held by an existing node was handed out again"
    assert all(cidrs[n] not in {f"10.244.{i}.0/24" for i in range(40)} for n in new)


# ----------------------------------------------------------------------------- the informer's own watch
async def _until(pred: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _set_cidr(kube: KubeServer, name: str, cidr: str) -> None:
    kube.patch("v1", "Node", name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})


def test_the_watch_hands_on_every_change_in_order_and_resumes_without_listing_again(kube: KubeServer) -> None:
    _node(kube, "a")
    _node(kube, "b")

    async def go() -> tuple[NodeCache, list[tuple[str, str, tuple[str, ...]]]]:
        client = KubeClient(kube.url)
        cache = NodeCache(client, watch_seconds=1)  # the server ends each watch after a second
        seen: list[tuple[str, str, tuple[str, ...]]] = []
        task = asyncio.create_task(cache.run(lambda t, v: seen.append((t, v.name, v.pod_cidrs))))
        await cache.ready()
        await asyncio.to_thread(_node, kube, "c")
        await asyncio.to_thread(_set_cidr, kube, "a", "10.0.1.0/24")
        await asyncio.to_thread(kube.delete, "v1", "Node", "b")
        await _until(lambda: len(seen) >= 3)
        await _until(lambda: cache.watches >= 3)  # two server-side ends of the watch, resumed
        await asyncio.to_thread(_set_cidr, kube, "c", "10.0.3.0/24")
        await _until(lambda: len(seen) >= 4)
        task.cancel()
        await client.close()
        return cache, seen

    cache, seen = asyncio.run(go())
    assert seen == [("ADDED", "c", ()), ("MODIFIED", "a", ("10.0.1.0/24",)), ("DELETED", "b", ()),
                    ("MODIFIED", "c", ("10.0.3.0/24",))]
    assert cache.lists == 1, "a resumed watch needs no new LIST"
    assert sorted(cache) == ["a", "c"] and cache["c"].pod_cidrs == ("10.0.3.0/24",)


def test_after_410_gone_the_relist_is_diffed_into_deleted_and_modified_events() -> None:
    with KubeServer(history_size=3) as kube:
        for name in ("a", "b", "c"):
            _node(kube, name)

        async def go() -> tuple[NodeCache, list[tuple[str, str, tuple[str, ...]]]]:
            client = KubeClient(kube.url)
            cache = NodeCache(client, page_size=2)
            await cache.ready()
            # while no watch runs, more changes than the server's history holds: a resume is impossible
            await asyncio.to_thread(kube.delete, "v1", "Node", "b")
            await asyncio.to_thread(_set_cidr, kube, "c", "10.0.3.0/24")
            await asyncio.to_thread(_node, kube, "d")
            await asyncio.to_thread(_node, kube, "e")
            seen: list[tuple[str, str, tuple[str, ...]]] = []
            task = asyncio.create_task(cache.run(lambda t, v: seen.append((t, v.name, v.pod_cidrs))))
            await _until(lambda: len(seen) >= 4)
            await asyncio.to_thread(_set_cidr, kube, "a", "10.0.1.0/24")  # and the watch goes on after it
            await _until(lambda: len(seen) >= 5)
            task.cancel()
            await client.close()
            return cache, seen

        cache, seen = asyncio.run(go())
    assert sorted(seen[:4]) == [("DELETED", "b", ()), ("MODIFIED", "c", ("10.0.3.0/24",)),
                                ("MODIFIED", "d", ()), ("MODIFIED", "e", ())]
    assert seen[4] == ("MODIFIED", "a", ("10.0.1.0/24",))
    assert sorted(cache) == ["a", "c", "d", "e"]
    assert cache.lists == 2 + 2  # the first LIST and the re-LIST, two pages each


def test_a_deleted_node_is_never_resurrected_by_an_older_version() -> None:
    """A write's response can reach the cache after the object's DELETED (tombstones outlive the LIST)."""
    cache = NodeCache(None)  # type: ignore[arg-type]  # apply() does no I/O
    cache._loaded.set()
    node = kubelet_node("x", "gce://p/z/x", "z")
    cache.apply("ADDED", _with_rv(node, 10))
    cache.apply("DELETED", _with_rv(node, 12))
    late = {**node, "spec": {**node["spec"], "podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24"]}}
    assert cache.apply("MODIFIED", _with_rv(late, 11)) is None  # our write landed before the deletion
    assert "x" not in cache
    assert cache.apply("ADDED", _with_rv(node, 13)) is not None  # re-created: a newer object
    assert cache["x"].resource_version == "13"
    assert cache.apply("DELETED", _with_rv(node, 12)) is None  # the old object's deletion, late
    assert "x" in cache
