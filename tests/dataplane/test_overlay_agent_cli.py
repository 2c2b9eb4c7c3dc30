"""`routectl agent` with the overlay, end to end: Nodes read over HTTP from the API emulator, the VXLAN
device, routes and entries written in a netns, the pods' MTU lowered for an Overlay pool, --cleanup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from routectl.cli import main as cli_main
from routectl.constants import API_VERSION, POOL_KIND, TRANSPORT_ANNOTATION
from routectl.crd import load_crd
from routectl.sim.kube import KubeServer
from tests.dataplane.netns import NetnsFactory
from tests.dataplane.test_agent_kube import cni_args, uplink

pytestmark = pytest.mark.dataplane
DEV = "routectl.vxlan"


def node(name: str, ip: str, cidr: str, overlay: bool = False) -> dict:
    meta: dict = {"name": name, **({"annotations": {TRANSPORT_ANNOTATION: "overlay"}} if overlay else {})}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta,
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer() as server:
        server.install_crd(load_crd())
        server.create(node("node-a", "10.0.0.10", "10.244.1.0/24"))
        server.create(node("node-b", "10.0.0.11", "10.244.2.0/24"))
        server.create(node("node-c", "10.0.0.12", "10.244.3.0/24", overlay=True))
        server.create({"apiVersion": API_VERSION, "kind": POOL_KIND, "metadata": {"name": "default"},
                       "spec": {"cidrs": ["10.244.0.0/16"], "routeLimitFallback": "Overlay"}})
        yield server


def test_cli_once_builds_the_overlay_and_cleanup_removes_it(netns: NetnsFactory, kube: KubeServer,
                                                            tmp_path: Path) -> None:
    ns = netns("node")
    uplink(ns, 1500)
    (tmp_path / "net.d").mkdir()
    base = ["agent", "--netns", ns.name, "--kubeconfig", kube.kubeconfig_path, *cni_args(tmp_path)]
    result = CliRunner().invoke(cli_main, [*base, "--once"], env={"NODE_NAME": "node-a"})
    assert result.exit_code == 0, result.output
    assert "10.244.3.0/24 via 10.244.3.0 dev routectl.vxlan proto static onlink" in ns.ip("route").stdout
    assert "10.244.2.0" not in ns.ip("route").stdout  # routed peer b: not over the overlay
    detail = ns.ip("-d", "link", "show", DEV).stdout
    assert "mtu 1450" in detail and "local 10.0.0.10" in detail and "dstport 8472" in detail
    conf = json.loads((tmp_path / "net.d" / "10-routectl.conflist").read_text())
    assert conf["plugins"][0]["mtu"] == 1450  # the pool may fall back: room for the VXLAN header

    result = CliRunner().invoke(cli_main, [*base, "--cleanup"], env={"NODE_NAME": "node-a"})
    assert result.exit_code == 0, result.output
    assert f"removed VXLAN device {DEV}" in result.output
    assert DEV not in ns.ip("link").stdout and "10.244.3.0" not in ns.ip("route").stdout


def test_no_overlay_flag_leaves_vxlan_alone(netns: NetnsFactory, kube: KubeServer,
                                            tmp_path: Path) -> None:
    ns = netns("node")
    uplink(ns, 1500)
    args = ["agent", "--once", "--no-overlay", "--no-manage-cni", "--netns", ns.name,
            "--kubeconfig", kube.kubeconfig_path]
    result = CliRunner().invoke(cli_main, args, env={"NODE_NAME": "node-a"})
    assert result.exit_code == 0, result.output
    assert DEV not in ns.ip("link").stdout


def test_without_an_overlay_pool_the_agent_lists_no_nodes(netns: NetnsFactory, kube: KubeServer,
                                                          tmp_path: Path) -> None:
    """A cluster that never opts in pays nothing: no Node list, no device (the all-Nodes watch remains)."""
    kube.patch(API_VERSION, POOL_KIND, "default", {"spec": {"routeLimitFallback": None}})
    kube.patch("v1", "Node", "node-c", {"metadata": {"annotations": None}})
    ns = netns("node")
    uplink(ns, 1500)
    mark = kube.requests.mark()
    args = ["agent", "--once", "--no-manage-cni", "--netns", ns.name, "--kubeconfig", kube.kubeconfig_path]
    result = CliRunner().invoke(cli_main, args, env={"NODE_NAME": "node-a"})
    assert result.exit_code == 0, result.output
    lists = [r for r in kube.requests.select(verb="list", resource="nodes", since=mark)]
    assert lists == [] and DEV not in ns.ip("link").stdout
