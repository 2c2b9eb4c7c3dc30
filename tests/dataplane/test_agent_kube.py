"""The agent end to end against the Kubernetes API emulator: Node and pools over HTTP, rules in a netns."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from routectl.agent.cnisync import CniSyncer
from routectl.agent.iptables import Iptables, Runner
from routectl.agent.kube import KubeSource, load_api_client
from routectl.agent.main import AgentLoop
from routectl.agent.sync import MasqSyncer
from routectl.cli import main as cli_main
from routectl.constants import (
    API_VERSION,
    EVENT_CNI_CONFIG_FAILED,
    EVENT_MASQUERADE_INVALID,
    MASQ_CHAIN,
    POOL_KIND,
)
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


def node_events(kube: KubeServer, reason: str = EVENT_MASQUERADE_INVALID, node: str = "node-a") -> list[dict]:
    return [e for e in kube.list("v1", "Event", "default")
            if e.get("reason") == reason and e["involvedObject"]["name"] == node]


def uplink(ns: Netns, mtu: int) -> None:
    """A node uplink with a default route, so the agent has a primary interface MTU to read."""
    ns.ip("link", "add", "eth0", "mtu", str(mtu), "type", "veth", "peer", "name", "eth0p", "mtu", str(mtu))
    ns.ip("link", "set", "eth0p", "up")
    ns.ip("link", "set", "eth0", "up")
    ns.ip("addr", "add", "10.0.0.10/24", "dev", "eth0")
    ns.ip("route", "add", "default", "via", "10.0.0.1")


def cni_args(tmp: Path, bin_dir: str = "/usr/lib/cni") -> list[str]:
    return ["--cni-conf-dir", str(tmp / "net.d"), "--cni-bin-dir", bin_dir,
            "--cni-ipam-data-dir", str(tmp / "ipam")]


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
        # forwarding is switched on right after the rules are in: wait for it rather than race it
        wait_for(lambda: ns.read_sysctl("net.ipv4.ip_forward") == "1", "forwarding turned on")

        set_non_masq(kube, ["10.0.0.0/24", "192.168.0.0/16"])
        wait_for(lambda: "-d 192.168.0.0/16" in rules_text(ns), "the pool change to reach the rules")
        # the rules show up while iptables-restore runs, the counter moves once it returned
        wait_for(lambda: syncer.iptables.writes == 2, "the agent to count its second write")

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


def test_cli_once_applies_and_fails_on_bad_input(netns: NetnsFactory, kube: KubeServer, tmp_path: Path):
    ns = netns("node")
    uplink(ns, 9001)
    (tmp_path / "net.d").mkdir()
    args = ["agent", "--once", "--netns", ns.name, "--kubeconfig", kube.kubeconfig_path, "--no-random-fully",
            *cni_args(tmp_path)]
    result = CliRunner().invoke(cli_main, args, env={"NODE_NAME": "node-a"})
    assert result.exit_code == 0, result.output
    text = rules_text(ns)
    assert "-s 10.244.1.0/24" in text and "--random-fully" not in text
    conf = json.loads((tmp_path / "net.d" / "10-routectl.conflist").read_text())
    assert conf["plugins"][0]["mtu"] == 9001, "MTU read from the node's primary interface in --netns"
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]

    set_non_masq(kube, ["10.0.0.0/24", "10.0.0.1/8"])
    result = CliRunner().invoke(cli_main, args, env={"NODE_NAME": "node-a"})
    assert result.exit_code == 1
    assert rules_text(ns) == text  # the rules already installed are kept
    assert len(node_events(kube)) == 1


def test_cli_requires_a_node_name():
    result = CliRunner().invoke(cli_main, ["agent", "--once"], env={"NODE_NAME": ""})
    assert result.exit_code == 2 and "--node-name" in result.output


def test_agent_writes_cni_config_only_once_the_node_has_a_pod_cidr(netns: NetnsFactory, kube: KubeServer,
                                                                   tmp_path: Path):
    """Over watches: no file while the Node has no podCIDR; written when the controller sets one; plugins
    gone later leave the file alone and put a CNIConfigFailed Event on the Node."""
    kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-c"}, "spec": {}})
    ns = netns("node")
    uplink(ns, 1460)
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    source = KubeSource(load_api_client(kube.kubeconfig_path), "node-c")
    runner = Runner(ns.prefix)
    cni_syncer = CniSyncer(conf_dir=str(conf_dir), bin_dirs=["/usr/lib/cni"], runner=runner,
                           report=lambda m: source.record_event(m, reason=EVENT_CNI_CONFIG_FAILED))
    loop = AgentLoop(source, MasqSyncer(Iptables(runner=runner, backend="nft")), resync=300.0, cni=cni_syncer)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    path = conf_dir / "10-routectl.conflist"
    try:
        wait_for(lambda: kube.requests.count(verb="get", resource="nodes", name="node-c") >= 1,
                 "a first sync")
        time.sleep(0.5)
        assert not path.exists() and cni_syncer.writes == 0
        cidr = "10.244.3.0/24"
        kube.patch("v1", "Node", "node-c", {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        wait_for(path.exists, "the CNI config once the node has a podCIDR")
        good = path.read_text()
        assert '"subnet": "10.244.3.0/24"' in good and '"mtu": 1460' in good
        # the plugins vanish from the node (the API refuses a bad podCIDR, so break the node instead)
        cni_syncer.bin_dirs = [str(tmp_path / "empty")]
        cni_syncer.mtu = 1400  # would change the file, were it written
        kube.patch("v1", "Node", "node-c", {"metadata": {"labels": {"poke": "1"}}})
        wait_for(lambda: node_events(kube, EVENT_CNI_CONFIG_FAILED, "node-c"), "a CNIConfigFailed Event")
        event = node_events(kube, EVENT_CNI_CONFIG_FAILED, "node-c")[0]
        assert event["type"] == "Warning" and "not found in" in event["message"]
        assert event["involvedObject"]["kind"] == "Node" and event["involvedObject"].get("uid")
        assert path.read_text() == good and cni_syncer.writes == 1, "bad input must keep the previous config"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def _agent_once(kube: KubeServer, ns: Netns, tmp: Path, *extra: str, wrap: tuple[str, ...] = ()
                ) -> subprocess.CompletedProcess[str]:
    argv = [*wrap, sys.executable, "-m", "routectl.cli", "agent", "--once", "--netns", ns.name,
            "--kubeconfig", kube.kubeconfig_path, "--node-name", "node-a", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_missing_plugins_and_read_only_config_dir_keep_the_previous_config(netns: NetnsFactory,
                                                                          kube: KubeServer, tmp_path: Path):
    """The real agent process: plugins missing → exit 1, Event, old file kept; a read-only config
    directory (a read-only bind mount in the agent's own mount namespace) → the same."""
    ns = netns("node")
    uplink(ns, 1500)
    (tmp_path / "net.d").mkdir()
    first = _agent_once(kube, ns, tmp_path, *cni_args(tmp_path))
    assert first.returncode == 0, first.stderr
    path = tmp_path / "net.d" / "10-routectl.conflist"
    good = path.read_text()
    change = ("--cni-mtu", "1400")  # every run below would change the file, were it written

    missing = _agent_once(kube, ns, tmp_path, *cni_args(tmp_path, bin_dir=str(tmp_path / "no-plugins")),
                          *change)
    assert missing.returncode == 1
    assert "not found in" in missing.stderr and "containernetworking-plugins" in missing.stderr
    events = node_events(kube, EVENT_CNI_CONFIG_FAILED)
    assert len(events) == 1 and "bridge, host-local, portmap, loopback not found" in events[0]["message"]
    assert path.read_text() == good

    d = str(tmp_path / "net.d")
    read_only = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f'mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec "$@"', "sh")
    ro = _agent_once(kube, ns, tmp_path, *cni_args(tmp_path), *change, wrap=read_only)
    assert ro.returncode == 1
    assert "Read-only file system" in ro.stderr, ro.stderr
    events = node_events(kube, EVENT_CNI_CONFIG_FAILED)
    assert len(events) == 2 and any("Read-only file system" in e["message"] for e in events)
    assert path.read_text() == good and sorted(p.name for p in path.parent.iterdir()) == [path.name]

    fixed = _agent_once(kube, ns, tmp_path, *cni_args(tmp_path), *change)
    assert fixed.returncode == 0 and '"mtu": 1400' in path.read_text() and '"mtu": 1500' in good
