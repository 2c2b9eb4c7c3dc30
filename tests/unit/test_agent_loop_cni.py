"""The agent loop's order: masquerade first, then the CNI config, and no CNI config while the
masquerade sync fails (no pod may start on a node whose egress would leave un-masqueraded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from routectl.agent.cnisync import CniSyncer
from routectl.agent.iptables import Iptables, IptablesError, Runner
from routectl.agent.main import AgentLoop
from routectl.agent.sync import MasqSyncer

NODE = {"metadata": {"name": "node-a"}, "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}}
POOL = {"kind": "PodCIDRPool", "metadata": {"name": "p"}, "spec": {"cidrs": ["10.244.0.0/16"]}}


class Source:
    """A fixed Node and pool list (the loop's NodeSource)."""

    def fetch(self):
        return NODE, [POOL]

    def start_watches(self, trigger, stop):
        return None

    def stop_watches(self):
        return None


def plugins(tmp: Path) -> str:
    d = tmp / "bin"
    d.mkdir()
    for name in ("bridge", "host-local", "portmap", "loopback"):
        (d / name).write_text("#!/bin/sh\n")
        (d / name).chmod(0o755)
    return str(d)


def test_no_cni_config_while_the_masquerade_sync_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no iptables at all: the masquerade sync raises
    cni = CniSyncer(conf_dir=str(tmp_path), bin_dirs=[plugins(tmp_path)], mtu=1500)
    loop = AgentLoop(Source(), MasqSyncer(Iptables(runner=Runner(), backend="nft"), ensure_sysctl=False),
                     cni=cni)
    with pytest.raises(IptablesError, match="command not found"):
        loop.sync_once()
    assert not cni.path.exists() and cni.writes == 0

