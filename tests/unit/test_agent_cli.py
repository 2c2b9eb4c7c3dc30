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
                   "--iptables-backend", "--cleanup", "--once"):
        assert option in result.output


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
