"""Unit tests of the agent's CNI config writer on a real directory: atomic, only on change, never before
the node has a podCIDR, and bad input (podCIDR, plugins, directory) reported with the old file kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from routectl.agent import cni
from routectl.agent.cnisync import CniSyncer, CniWriteError, write_atomically

PLUGINS = ("bridge", "host-local", "portmap", "loopback")


def node(*cidrs: str) -> dict:
    spec = {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)} if cidrs else {}
    return {"metadata": {"name": "node-a"}, "spec": spec}


def plugin_dir(root: Path, names: tuple[str, ...] = PLUGINS) -> Path:
    d = root / "bin"
    d.mkdir(exist_ok=True)
    for name in names:
        p = d / name
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    return d


@pytest.fixture
def env(tmp_path: Path) -> tuple[CniSyncer, list[str]]:
    reports: list[str] = []
    conf = tmp_path / "net.d"
    conf.mkdir()
    syncer = CniSyncer(conf_dir=str(conf), bin_dirs=[str(tmp_path / "missing"), str(plugin_dir(tmp_path))],
                       mtu=1460, report=reports.append)
    return syncer, reports


def test_writes_the_rendered_config_once_and_then_nothing(env):
    syncer, reports = env
    result = syncer.sync(node("10.244.1.0/24", "fd00:10:244:1::/64"))
    assert result.written and not result.errors
    text = syncer.path.read_text()
    assert text == cni.render_conflist([cni.ipaddress.ip_network("10.244.1.0/24"),
                                        cni.ipaddress.ip_network("fd00:10:244:1::/64")], 1460)
    assert syncer.path.name == "10-routectl.conflist" and oct(syncer.path.stat().st_mode & 0o777) == "0o644"
    inode = syncer.path.stat().st_ino
    for _ in range(5):
        assert syncer.sync(node("10.244.1.0/24", "fd00:10:244:1::/64")).written is False
    assert syncer.path.stat().st_ino == inode and syncer.writes == 1 and reports == []
    assert sorted(os.listdir(syncer.conf_dir)) == ["10-routectl.conflist"]  # no temp file left


def test_a_changed_input_replaces_the_file(env):
    syncer, _ = env
    syncer.sync(node("10.244.1.0/24"))
    inode = syncer.path.stat().st_ino
    syncer.mtu = 1400
    assert syncer.sync(node("10.244.1.0/24")).written
    assert json.loads(syncer.path.read_text())["plugins"][0]["mtu"] == 1400
    assert syncer.path.stat().st_ino != inode, "a new file renamed over the old one, never rewritten in place"


def test_nothing_is_written_before_the_node_has_a_pod_cidr(env):
    syncer, reports = env
    result = syncer.sync(node())
    assert not result.written and not result.errors and reports == []
    assert not syncer.path.exists()


def test_unparsable_pod_cidr_keeps_the_previous_config_and_reports_once(env):
    syncer, reports = env
    syncer.sync(node("10.244.1.0/24"))
    before = syncer.path.read_text()
    for _ in range(3):
        result = syncer.sync(node("10.244.1.5/24"))
        assert result.errors and not result.written
    assert syncer.path.read_text() == before
    assert len(reports) == 1 and "10.244.1.5/24" in reports[0] and "CNI config not written" in reports[0]
    # fixed: written again, and a new failure is reported again
    assert not syncer.sync(node("10.244.2.0/24")).errors
    syncer.sync(node("bogus"))
    assert len(reports) == 2


def test_two_cidrs_of_one_family_are_refused(env):
    syncer, reports = env
    result = syncer.sync(node("10.244.1.0/24", "10.244.2.0/24"))
    assert result.errors and "more than one IPv4" in reports[0] and not syncer.path.exists()


def test_missing_plugin_directory_or_plugin_keeps_the_previous_config(tmp_path: Path, env):
    syncer, reports = env
    syncer.sync(node("10.244.1.0/24"))
    before = syncer.path.read_text()
    syncer.bin_dirs = [str(tmp_path / "nowhere")]
    result = syncer.sync(node("10.244.9.0/24"))
    assert result.errors and syncer.path.read_text() == before
    assert "bridge, host-local, portmap, loopback not found in" in reports[0]
    assert "containernetworking-plugins" in reports[0]
    (tmp_path / "bin" / "portmap").unlink()
    syncer.bin_dirs = [str(tmp_path / "bin")]
    syncer.sync(node("10.244.9.0/24"))
    assert "CNI plugin(s) portmap not found" in reports[1] and syncer.path.read_text() == before


def test_missing_config_directory_is_reported(tmp_path: Path, env):
    syncer, reports = env
    syncer.conf_dir = str(tmp_path / "no" / "such" / "dir")
    result = syncer.sync(node("10.244.1.0/24"))
    assert result.errors and "cannot write" in reports[0] and "No such file or directory" in reports[0]


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path):
    target = tmp_path / "10-routectl.conflist"
    target.write_text("old\n")
    (tmp_path / "blocker").mkdir()
    # the target name is a non-empty directory: the rename fails after the temp file was written
    bad = tmp_path / "blocker"
    (bad / "x").write_text("")
    with pytest.raises(CniWriteError, match="cannot write"):
        write_atomically(bad, "new\n")
    assert sorted(os.listdir(tmp_path)) == ["10-routectl.conflist", "blocker"]
    assert target.read_text() == "old\n"
    assert write_atomically(target, "new\n") and target.read_text() == "new\n"
    assert write_atomically(target, "new\n") is False


def test_cleanup_removes_only_our_file(env):
    syncer, _ = env
    assert syncer.cleanup() is False
    syncer.sync(node("10.244.1.0/24"))
    assert syncer.cleanup() is True and not syncer.path.exists()
    syncer.path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "someone-else", "plugins": []}))
    with pytest.raises(CniWriteError, match="not routectl's"):
        syncer.cleanup()
    assert syncer.path.exists()


def test_a_config_sorting_first_is_warned_about(env, caplog):
    syncer, _ = env
    Path(syncer.conf_dir, "05-other.conflist").write_text("{}")
    with caplog.at_level("WARNING"):
        syncer.sync(node("10.244.1.0/24"))
        syncer.sync(node("10.244.1.0/24"))
    warnings = [r.message for r in caplog.records if "sort before" in r.message]
    assert len(warnings) == 1 and "05-other.conflist" in warnings[0]


def test_bad_file_name_is_refused_up_front(tmp_path: Path):
    with pytest.raises(cni.CniConfigError):
        CniSyncer(conf_dir=str(tmp_path), conf_file="routectl.json")
