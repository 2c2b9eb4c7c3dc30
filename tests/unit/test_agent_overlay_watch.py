"""The agent's all-Nodes watch triggers a sync only when something the overlay uses changes."""

from __future__ import annotations

from kubernetes import client

from routectl.agent.kube import KubeSource


def event(etype: str, name: str, cidr: str = "10.244.1.0/24", ip: str = "10.0.0.11",
          transport: str | None = None, heartbeat: str = "t0") -> dict:
    meta: dict = {"name": name, "annotations": {"routectl.io/transport": transport} if transport else {}}
    return {"type": etype, "object": {
        "metadata": meta, "spec": {"podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                   "conditions": [{"type": "Ready", "lastHeartbeatTime": heartbeat}]}}}


def test_only_overlay_relevant_changes_trigger() -> None:
    src = KubeSource(client.ApiClient(), "node-a", watch_all_nodes=True)
    assert src._node_changed(event("ADDED", "node-b"))
    assert not src._node_changed(event("MODIFIED", "node-b", heartbeat="t1"))  # status heartbeat only
    assert src._node_changed(event("MODIFIED", "node-b", transport="overlay"))
    assert src._node_changed(event("MODIFIED", "node-b", transport="overlay", ip="10.0.0.99"))
    assert src._node_changed(event("MODIFIED", "node-a", heartbeat="t1"))  # our own Node: always
    assert src._node_changed(event("DELETED", "node-b"))
    assert src._node_changed(event("ADDED", "node-b"))  # re-created after the delete
