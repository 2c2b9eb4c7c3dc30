"""The agent end to end against the Kubernetes API emulator: Node and pools over HTTP, rules in a netns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from routectl.agent.iptables import Iptables, Runner
from routectl.agent.kube import KubeSource, load_api_client
from routectl.agent.main import AgentLoop
from routectl.agent.sync import MasqSyncer
from routectl.cli import main as cli_main
from routectl.constants import API_VERSION, EVENT_MASQUERADE_INVALID, MASQ_CHAIN, POOL_KIND
from routectl.crd import load_crd
from routectl.sim.kube import KubeServer
from tests.dataplane.netns import Netns, NetnsFactory

pytestmark = pytest.mark.dataplane

NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}}
OTHER_NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"},
              "spec": {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]}}
POOL = {"apiVersion": API_VERSION, "kind": POOL_KIND, "metadata": {"name": "default"},
        "spec": {"cidrs": ["10.244.0.0/16"], "masquerade": {"nonMasqueradeCIDRs": ["10.0.0.0/24"]}}}


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer() as server:
        server.install_crd(load_crd())
        server.create(NODE)
        server.create(OTHER_NODE)
        server.create(POOL)
        yield server


def rules_text(ns: Netns) -> str:
    return "\n".join(ln for ln in ns.run("iptables-nft-save", "-t", "nat").stdout.splitlines()
                     if MASQ_CHAIN in ln)


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def node_events(kube: KubeServer) -> list[dict]:
    return [e for e in kube.list("v1", "Event", "default")
            if e.get("reason") == EVENT_MASQUERADE_INVALID and e["involvedObject"]["name"] == "node-a"]


def set_non_masq(kube: KubeServer, cidrs: list[str]) -> None:
    kube.patch(API_VERSION, POOL_KIND, "default", {"spec": {"masquerade": {"nonMasqueradeCIDRs": cidrs}}})


def test_agent_follows_its_node_and_the_pools_over_watches(netns: NetnsFactory, kube: KubeServer):
    ns = netns("node")
    source = KubeSource(load_api_client(kube.kubeconfig_path), "node-a")
    syncer = MasqSyncer(Iptables(runner=Runner(ns.prefix), backend="nft"), report=source.record_event)
    loop = AgentLoop(source, syncer, resync=300.0)  # longer than every wait below: watches must drive it
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: "-s 10.244.1.0/24" in rules_text(ns), "the initial rules")
        text = rules_text(ns)
        assert "-d 10.0.0.0/24" in text and "-d 10.244.0.0/16" in text and "10.244.2.0" not in text
        assert ns.read_sysctl("net.ipv4.ip_forward") == "1"

        set_non_masq(kube, ["10.0.0.0/24", "192.168.0.0/16"])
        wait_for(lambda: "-d 192.168.0.0/16" in rules_text(ns), "the pool change to reach the rules")

        writes = syncer.iptables.writes
        # another node's change triggers no sync of this agent (field selector on its own Node) ...
        time.sleep(0.5)
        reads = kube.requests.count(verb="get", resource="nodes", name="node-a")
        kube.patch("v1", "Node", "node-b", {"metadata": {"labels": {"x": "y"}}})
        time.sleep(1.0)
        assert kube.requests.count(verb="get", resource="nodes", name="node-a") == reads
        # ... while a change of its own Node does, and an unchanged result writes nothing
        kube.patch("v1", "Node", "node-a", {"metadata": {"labels": {"x": "y"}}})
        wait_for(lambda: kube.requests.count(verb="get", resource="nodes", name="node-a") > reads,
                 "a sync after the agent's own Node changed")
        time.sleep(0.5)
        assert syncer.iptables.writes == writes

        good = rules_text(ns)
        set_non_masq(kube, ["10.0.0.0/24", "10.0.0.1/8"])  # host bits: passes the schema, not the agent
        wait_for(lambda: node_events(kube), "a MasqueradeConfigInvalid Event on the Node")
        event = node_events(kube)[0]
        assert event["type"] == "Warning" and "10.0.0.1/8" in event["message"]
        assert event["involvedObject"]["kind"] == "Node" and event["involvedObject"].get("uid")
        assert rules_text(ns) == good, "bad input must keep the last good rules"
        assert syncer.iptables.writes == writes

        set_non_masq(kube, ["10.0.0.0/24"])
        wait_for(lambda: "192.168.0.0" not in rules_text(ns), "good input to be applied again")
        assert len(node_events(kube)) == 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_cli_once_applies_and_fails_on_bad_input(netns: NetnsFactory, kube: KubeServer):
    ns = netns("node")
    args = ["agent", "--once", "--netns", ns.name, "--kubeconfig", kube.kubeconfig_path, "--no-random-fully"]
    result = CliRunner().invoke(cli_main, args, env={"NODE_NAME": "node-a"})
    assert result.exit_code == 0, result.output
    text = rules_text(ns)
    assert "-s 10.244.1.0/24" in text and "--random-fully" not in text

    set_non_masq(kube, ["10.0.0.0/24", "10.0.0.1/8"])
    result = CliRunner().invoke(cli_main, args, env={"NODE_NAME": "node-a"})
    assert result.exit_code == 1
    assert rules_text(ns) == text  # the rules already installed are kept
    assert len(node_events(kube)) == 1


def test_cli_requires_a_node_name():
    result = CliRunner().invoke(cli_main, ["agent", "--once"], env={"NODE_NAME": ""})
    assert result.exit_code == 2 and "--node-name" in result.output
