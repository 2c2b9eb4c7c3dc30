"""The agent's all-Nodes cache wakes a sync only when something the overlay uses changes."""

from __future__ import annotations

from routectl.agent.nodecache import NodeCache


def event(etype: str, name: str, cidr: str = "10.244.1.0/24", ip: str = "10.0.0.11",
          transport: str | None = None, heartbeat: str = "t0") -> dict:
    meta: dict = {"name": name, "annotations": {"routectl.io/transport": transport} if transport else {}}
    return {"type": etype, "object": {
        "metadata": meta, "spec": {"podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                   "conditions": [{"type": "Ready", "lastHeartbeatTime": heartbeat}]}}}


def test_only_overlay_relevant_changes_trigger() -> None:
    woken: list[int] = []
    cache = NodeCache(None, lambda: woken.append(1))  # type: ignore[arg-type]  # apply() does no I/O
    assert cache.apply(event("ADDED", "node-b"))
    assert not cache.apply(event("MODIFIED", "node-b", heartbeat="t1"))  # status heartbeat only
    assert cache.apply(event("MODIFIED", "node-b", transport="overlay"))
    assert cache.apply(event("MODIFIED", "node-b", transport="overlay", ip="10.0.0.99"))
    assert cache.apply(event("DELETED", "node-b"))
    assert cache.apply(event("ADDED", "node-b"))  # re-created after the delete
    assert len(woken) == 5 and [n["metadata"]["name"] for n in cache.nodes()] == ["node-b"]
    assert not cache.apply({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
