"""`routectl agent` command line: registration, options and clear errors (no root needed)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from routectl.cli import main as cli_main

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_agent_is_registered_with_its_options():
    result = CliRunner().invoke(cli_main, ["agent", "--help"])
    assert result.exit_code == 0
    for option in ("--node-name", "--kubeconfig", "--resync", "--random-fully / --no-random-fully",
                   "--iptables-backend", "--cleanup", "--once", "--manage-cni / --no-manage-cni",
                   "--cni-conf-dir", "--cni-conf-file", "--cni-bin-dir", "--cni-mtu", "--cni-bridge",
                   "--cni-network-name", "--cni-ipam-data-dir", "--keep-cni-config"):
        assert option in result.output
    assert "/etc/cni/net.d" in result.output and "10-routectl.conflist" in result.output


def test_cleanup_removes_the_cni_config_unless_told_to_keep_it(tmp_path: Path):
    conf = tmp_path / "10-routectl.conflist"
    conf.write_text('{"cniVersion": "1.0.0", "name": "routectl", "plugins": []}\n')
    env = {"PATH": str(tmp_path)}  # no iptables here: only the CNI part has something to remove
    keep = CliRunner().invoke(cli_main, ["agent", "--cleanup", "--keep-cni-config", "--cni-conf-dir",
                                         str(tmp_path)], env=env)
    assert keep.exit_code == 0 and conf.exists(), keep.output
    off = CliRunner().invoke(cli_main, ["agent", "--cleanup", "--no-manage-cni", "--cni-conf-dir",
                                        str(tmp_path)], env=env)
    assert off.exit_code == 0 and conf.exists(), off.output
    result = CliRunner().invoke(cli_main, ["agent", "--cleanup", "--cni-conf-dir", str(tmp_path)], env=env)
    assert result.exit_code == 0 and not conf.exists()
    assert f"removed CNI config {conf}" in result.output


def test_bad_cni_names_are_refused_at_start_up():
    for args, option in ((["--cni-bridge", "a-name-far-too-long"], "--cni-bridge"),
                         (["--cni-conf-file", "routectl.conf"], "--cni-conf-file"),
                         (["--cni-network-name", "-x"], "--cni-network-name"),
                         (["--cni-mtu", "100"], "--cni-mtu")):
        result = CliRunner().invoke(cli_main, ["agent", "--node-name", "n1", *args])
        assert result.exit_code == 2 and option in result.output, result.output


def test_missing_iptables_is_a_clear_error(tmp_path: Path):
    config = tmp_path / "kubeconfig"
    config.write_text(KUBECONFIG)
    result = CliRunner().invoke(cli_main, ["agent", "--once", "--kubeconfig", str(config)],
                                env={"NODE_NAME": "n1", "PATH": str(tmp_path)})
    assert result.exit_code == 1
    assert ("cannot use iptables: neither iptables-nft-save nor iptables-legacy-save is available"
            in result.output)


def test_resync_must_be_positive():
    result = CliRunner().invoke(cli_main, ["agent", "--resync", "0", "--node-name", "n1"])
    assert result.exit_code == 2 and "--resync" in result.output
