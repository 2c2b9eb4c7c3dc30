"""NodeView: what the controller keeps of each Node for the Node's life, and no more (issue 10: RSS)."""

from __future__ import annotations

import json

from routectl.controller.state import NodeView, condition_is_current, route_state
from routectl.sim.cluster import kubelet_node


def _decoded(name: str) -> dict[str, object]:
    """A Node as the API client hands it over: freshly decoded JSON, no text shared with other nodes."""
    body = kubelet_node(name, f"gce://p/us-central1-a/{name}", "us-central1-a",
                        {"pool.example.com/tier": "a"})
    body["metadata"].update(uid=f"uid-{name}", resourceVersion="7", creationTimestamp="2026-12-02T05:00:00Z")
    body["spec"]["podCIDRs"] = ["10.1.2.0/24"]
    return dict(json.loads(json.dumps(body)))


def test_a_view_keeps_what_the_controller_reads() -> None:
    v = NodeView.from_body(_decoded("n1"))
    assert (v.name, v.uid, v.provider_id, v.pod_cidrs, v.resource_version, v.created) == (
        "n1", "uid-n1", "gce://p/us-central1-a/n1", ("10.1.2.0/24",), "7", "2026-12-02T05:00:00Z")
    assert v.labels["pool.example.com/tier"] == "a" and v.labels["kubernetes.io/hostname"] == "n1"
    # the kubelet's condition: compared, but without the heartbeat timestamps
    assert v.condition == {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated",
                           "message": "Node created without a route"}
    assert not condition_is_current(v.condition, route_state(True))


def test_views_share_label_and_condition_texts_and_have_no_instance_dict() -> None:
    a, b = NodeView.from_body(_decoded("n1")), NodeView.from_body(_decoded("n2"))
    ka = {k: k for k in a.labels}
    for k in b.labels:
        assert ka[k] is k  # one copy of each label key for all nodes
    assert a.labels["topology.kubernetes.io/zone"] is b.labels["topology.kubernetes.io/zone"]
    assert a.condition is not None and b.condition is not None
    assert a.condition["message"] is b.condition["message"]
    assert not hasattr(a, "__dict__")
