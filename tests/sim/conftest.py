"""Fixtures for the Kubernetes API emulator tests: one emulator per test and an official-client ApiClient."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from routectl.sim.kube import KubeServer


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    """A fresh emulator on a free 127.0.0.1 port (stopped after the test)."""
    with KubeServer() as server:
        yield server


@pytest.fixture
def api(kube: KubeServer) -> Iterator[kubernetes.client.ApiClient]:
    """The official client configured from the emulator's kubeconfig file (as a user would)."""
    client = kubernetes.config.new_client_from_config(config_file=kube.kubeconfig_path)
    try:
        yield client
    finally:
        client.close()


def pool_crd(group: str = "routectl.io", plural: str = "podcidrpools", kind: str = "PodCIDRPool") -> dict:
    """A small cluster-scoped CRD shaped like PodCIDRPool (status subresource, a tiny schema)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": ["pcp"]},
            "versions": [{
                "name": "v1alpha1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "cidrs": {"type": "array", "items": {"type": "string"}},
                            "nodeMaskSizeIPv4": {"type": "integer", "minimum": 8, "maximum": 30},
                        }},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
            }],
        },
    }
