"""The agent's real apply code against real iptables (nft and legacy) inside throwaway network namespaces."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from routectl.agent import rules
from routectl.agent.cnisync import CniSyncer
from routectl.agent.iptables import Iptables, Runner, detect_backend
from routectl.agent.main import AgentLoop
from routectl.agent.sync import MasqSyncer, compute_desired
from routectl.agent.sysctl import SysctlError, ensure_forwarding
from routectl.cli import main as cli_main
from routectl.constants import MASQ_CHAIN
from tests.dataplane.netns import Netns, NetnsFactory

pytestmark = pytest.mark.dataplane

BACKENDS = ["nft", "legacy"]
FOREIGN_JUMP = "-A POSTROUTING -o eth9 -m comment --comment other-cni -j MASQUERADE"


def node(*cidrs: str) -> dict:
    return {"metadata": {"name": "node-a"}, "spec": {"podCIDRs": list(cidrs)}}


def pool(cidrs: list[str], non_masq: list[str], name: str = "pool-a") -> dict:
    return {"kind": "PodCIDRPool", "metadata": {"name": name},
            "spec": {"cidrs": cidrs, "masquerade": {"nonMasqueradeCIDRs": non_masq}}}


GOOD = compute_desired(node("10.244.1.0/24"), [pool(["10.244.0.0/16"], ["10.0.0.0/24"])])
GOOD2 = compute_desired(node("10.244.1.0/24"), [pool(["10.244.0.0/16"], ["10.0.0.0/24", "10.9.0.0/16"])])
BAD = compute_desired(node("10.244.1.0/24"), [pool(["10.244.0.0/16"], ["10.0.0.0/24", "10.9.0.300/16"])])
ZERO = compute_desired(node("10.244.1.0/24"), [pool(["10.244.0.0/16"], ["10.0.0.0/24", "0.0.0.0/0"])])


def ipt_in(ns: Netns, backend: str) -> Iptables:
    return Iptables(runner=Runner(ns.prefix), backend=backend)


def chain_lines(ns: Netns, backend: str, family: int = 4) -> list[str]:
    tool = "iptables" if family == 4 else "ip6tables"
    out = ns.run(f"{tool}-{backend}-save", "-t", "nat").stdout
    return [ln for ln in out.splitlines() if ln.startswith("-A")]


def foreign_rules(ns: Netns, backend: str) -> None:
    ns.run(f"iptables-{backend}-restore", "--noflush", stdin=(
        "*nat\n:OTHER-CHAIN - [0:0]\n-A OTHER-CHAIN -d 10.0.0.0/8 -j RETURN\n" + FOREIGN_JUMP + "\nCOMMIT\n"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_apply_installs_exactly_the_rendered_chain_and_then_writes_nothing(netns: NetnsFactory, backend: str):
    ns = netns("node")
    ipt = ipt_in(ns, backend)
    syncer = MasqSyncer(ipt)
    assert syncer.sync(GOOD).writes == 1
    spec = GOOD.specs[4]
    assert chain_lines(ns, backend) == [rules.jump_rule(), *rules.chain_rules(spec)]
    assert sum(syncer.sync(GOOD).writes for _ in range(20)) == 0
    assert ipt.writes == 1


def test_foreign_rules_survive_apply_update_and_cleanup(netns: NetnsFactory, backend: str):
    ns = netns("node")
    foreign_rules(ns, backend)
    before = chain_lines(ns, backend)
    ipt = ipt_in(ns, backend)
    syncer = MasqSyncer(ipt)
    syncer.sync(GOOD)
    assert syncer.sync(GOOD2).writes == 1
    lines = chain_lines(ns, backend)
    assert all(ln in lines for ln in before)
    assert f"-A {MASQ_CHAIN} -d 10.9.0.0/16" in "\n".join(lines)
    assert ipt.cleanup(4) is True
    assert chain_lines(ns, backend) == before
    assert f":{MASQ_CHAIN}" not in ns.run(f"iptables-{backend}-save", "-t", "nat").stdout
    assert ipt.cleanup(4) is False


@pytest.mark.parametrize("damage",
                         ["delete-jump", "flush-chain", "add-rule", "duplicate-jump", "delete-chain"])
def test_periodic_sync_repairs_rules_changed_by_someone_else(netns: NetnsFactory, backend: str, damage: str):
    ns = netns("node")
    syncer = MasqSyncer(ipt_in(ns, backend))
    syncer.sync(GOOD)
    want = chain_lines(ns, backend)
    tool = f"iptables-{backend}"
    jump_spec = ["-m", "addrtype", "!", "--dst-type", "LOCAL", "-m", "comment", "--comment",
                 rules.JUMP_COMMENT, "-j", MASQ_CHAIN]
    if damage == "delete-jump":
        ns.run(tool, "-t", "nat", "-D", "POSTROUTING", *jump_spec)
    elif damage == "flush-chain":
        ns.run(tool, "-t", "nat", "-F", MASQ_CHAIN)
    elif damage == "add-rule":
        ns.run(tool, "-t", "nat", "-I", MASQ_CHAIN, "-d", "0.0.0.0/0", "-j", "RETURN")
    elif damage == "duplicate-jump":
        ns.run(tool, "-t", "nat", "-A", "POSTROUTING", *jump_spec)
    elif damage == "delete-chain":
        ns.run(tool, "-t", "nat", "-D", "POSTROUTING", *jump_spec)
        ns.run(tool, "-t", "nat", "-F", MASQ_CHAIN)
        ns.run(tool, "-t", "nat", "-X", MASQ_CHAIN)
    assert chain_lines(ns, backend) != want
    assert syncer.sync(GOOD).writes == 1
    assert chain_lines(ns, backend) == want
    assert syncer.sync(GOOD).writes == 0


def test_bad_input_keeps_last_good_rules_and_reports_once(netns: NetnsFactory, backend: str):
    ns = netns("node")
    reports: list[str] = []
    syncer = MasqSyncer(ipt_in(ns, backend), report=reports.append)
    syncer.sync(GOOD)
    want = chain_lines(ns, backend)
    assert BAD.errors
    for _ in range(3):
        result = syncer.sync(BAD)
        assert result.kept_last_good and result.writes == 0
    assert chain_lines(ns, backend) == want
    assert len(reports) == 1 and "10.9.0.300/16" in reports[0]
    # someone removes the rules while the input is bad: the last good rules come back, not the partial ones
    ns.run(f"iptables-{backend}", "-t", "nat", "-F", MASQ_CHAIN)
    assert syncer.sync(BAD).writes == 1
    assert chain_lines(ns, backend) == want
    # good input again: applied, and a later bad input is reported again
    assert syncer.sync(GOOD2).writes == 1
    syncer.sync(BAD)
    assert len(reports) == 2


def test_zero_non_masquerade_cidr_keeps_last_good_rules(netns: NetnsFactory, backend: str):
    ns = netns("node")
    reports: list[str] = []
    syncer = MasqSyncer(ipt_in(ns, backend), report=reports.append)
    syncer.sync(GOOD2)
    want = chain_lines(ns, backend)
    result = syncer.sync(ZERO)
    assert result.kept_last_good and result.writes == 0 and result.families == (4,)
    assert chain_lines(ns, backend) == want
    assert len(reports) == 1 and "0.0.0.0/0 is too wide" in reports[0]
    assert "keeping the last good" in reports[0]


def test_zero_non_masquerade_cidr_on_a_fresh_node_installs_a_chain_and_repairs_it(
        netns: NetnsFactory, backend: str):
    """After a reboot (nothing installed, nothing known) a /0 entry costs only itself, and the chain so
    installed is kept and repaired by later syncs while the input stays bad."""
    ns = netns("node")
    reports: list[str] = []
    syncer = MasqSyncer(ipt_in(ns, backend), report=reports.append)
    result = syncer.sync(ZERO)
    assert result.writes == 1 and result.families == (4,) and not result.kept_last_good
    want = chain_lines(ns, backend)
    assert want == [rules.jump_rule(), *rules.chain_rules(ZERO.specs[4])]
    text = "\n".join(want)
    assert "-d 10.0.0.0/24" in text and "-s 10.244.1.0/24" in text and "-j MASQUERADE" in text
    assert "0.0.0.0/0" not in text
    assert len(reports) == 1 and "installed the rules without the rejected entries" in reports[0]
    ns.run(f"iptables-{backend}", "-t", "nat", "-F", MASQ_CHAIN)
    result = syncer.sync(ZERO)
    assert result.writes == 1 and result.kept_last_good
    assert chain_lines(ns, backend) == want
    assert syncer.sync(ZERO).writes == 0 and len(reports) == 1


def test_bad_input_over_an_empty_leftover_chain_installs_the_safe_subset(netns: NetnsFactory, backend: str):
    """An empty routectl chain (no jump, no MASQUERADE) is no rules at all: it is not 'kept'."""
    ns = netns("node")
    ns.run(f"iptables-{backend}-restore", "--noflush", stdin=f"*nat\n:{MASQ_CHAIN} - [0:0]\nCOMMIT\n")
    result = MasqSyncer(ipt_in(ns, backend)).sync(ZERO)
    assert result.writes == 1 and not result.kept_last_good
    assert chain_lines(ns, backend) == [rules.jump_rule(), *rules.chain_rules(ZERO.specs[4])]


def test_bad_input_at_start_keeps_installed_rules(netns: NetnsFactory, backend: str):
    ns = netns("node")
    MasqSyncer(ipt_in(ns, backend)).sync(GOOD2)  # a previous agent run
    want = chain_lines(ns, backend)
    restarted = MasqSyncer(ipt_in(ns, backend))
    result = restarted.sync(BAD)
    assert result.kept_last_good and result.writes == 0
    assert chain_lines(ns, backend) == want


def test_bad_input_on_a_fresh_node_installs_the_safe_subset(netns: NetnsFactory, backend: str):
    ns = netns("node")
    result = MasqSyncer(ipt_in(ns, backend)).sync(BAD)
    assert result.writes == 1 and not result.kept_last_good
    text = "\n".join(chain_lines(ns, backend))
    assert "-j MASQUERADE" in text and "10.9.0.0" not in text  # never open: pod egress still masqueraded


def test_dual_stack_uses_ip6tables_and_enables_both_forwardings(netns: NetnsFactory, backend: str):
    ns = netns("node")
    assert ns.read_sysctl("net.ipv4.ip_forward") == "0"
    assert ns.read_sysctl("net.ipv6.conf.all.forwarding") == "0"
    desired = compute_desired(node("10.244.1.0/24", "fd00:10:244:1::/64"),
                              [pool(["10.244.0.0/16", "fd00:10:244::/56"], ["10.0.0.0/24", "fd00:a::/64"])])
    syncer = MasqSyncer(ipt_in(ns, backend))
    assert syncer.sync(desired).writes == 2
    assert ns.read_sysctl("net.ipv4.ip_forward") == "1"
    assert ns.read_sysctl("net.ipv6.conf.all.forwarding") == "1"
    v6 = chain_lines(ns, backend, 6)
    assert v6 == [rules.jump_rule(), *rules.chain_rules(desired.specs[6])]
    assert any("-s fd00:10:244:1::/64" in ln and "MASQUERADE" in ln for ln in v6)
    assert syncer.sync(desired).writes == 0


def test_ipv4_only_node_leaves_ip6tables_alone(netns: NetnsFactory):
    ns = netns("node")
    MasqSyncer(ipt_in(ns, "nft")).sync(GOOD)
    assert chain_lines(ns, "nft", 6) == []
    assert ns.read_sysctl("net.ipv6.conf.all.forwarding") == "0"


def test_forwarding_error_is_clear(netns: NetnsFactory):
    ns = netns("node")
    with pytest.raises(SysctlError, match=r"cannot enable net\.ipv4\.ip_forward=1"):
        # a runner whose namespace does not exist cannot touch /proc/sys: the message says what to do
        ensure_forwarding(Runner(("ip", "netns", "exec", ns.name + "-missing")), 4)
    assert ensure_forwarding(Runner(ns.prefix), 4) is True
    assert ensure_forwarding(Runner(ns.prefix), 4) is False


def test_read_only_proc_sys_still_gets_rules_then_a_clear_error(netns: NetnsFactory):
    ns = netns("node")
    # like a non-privileged container: /proc/sys read-only (in a private mount namespace of the command)
    read_only = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"', "sh")
    syncer = MasqSyncer(Iptables(runner=Runner((*ns.prefix, *read_only)), backend="nft"))
    with pytest.raises(SysctlError, match=r"cannot enable net\.ipv4\.ip_forward=1 .*set net\.ipv4"):
        syncer.sync(GOOD)
    assert chain_lines(ns, "nft") == [rules.jump_rule(), *rules.chain_rules(GOOD.specs[4])]
    ns.sysctl("net.ipv4.ip_forward", "1")  # the operator sets it on the node: the agent is content
    assert syncer.sync(GOOD).writes == 0


def test_read_only_proc_sys_still_gets_the_cni_config(netns: NetnsFactory, tmp_path):
    """Forwarding off and not writable: the rules go in, the CNI config is written too (the bridge
    plugin enables forwarding for its first pod), and the sync still reports the error."""
    ns = netns("node")
    read_only = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"', "sh")
    runner = Runner((*ns.prefix, *read_only))
    node_obj = node("10.244.1.0/24")

    class Source:
        def fetch(self):
            return node_obj, [pool(["10.244.0.0/16"], ["10.0.0.0/24"])]

    cni_syncer = CniSyncer(conf_dir=str(tmp_path), bin_dirs=["/usr/lib/cni"], mtu=1500, runner=runner)
    masq = MasqSyncer(Iptables(runner=runner, backend="nft"))
    loop = AgentLoop(Source(), masq, cni=cni_syncer)  # type: ignore[arg-type]
    with pytest.raises(SysctlError):
        loop.sync_once()
    assert chain_lines(ns, "nft") == [rules.jump_rule(), *rules.chain_rules(GOOD.specs[4])]
    assert cni_syncer.path.exists() and cni_syncer.writes == 1


@pytest.mark.parametrize("used", BACKENDS)
def test_backend_detection_follows_the_rules_already_there(netns: NetnsFactory, used: str):
    ns = netns("node")
    lines = "".join(f"-A OTHER -d 10.{i}.0.0/16 -j RETURN\n" for i in range(12))
    ns.run(f"iptables-{used}-restore", "--noflush", stdin=f"*nat\n:OTHER - [0:0]\n{lines}COMMIT\n")
    assert detect_backend(Runner(ns.prefix)) == used
    ipt = Iptables.detect(Runner(ns.prefix))
    MasqSyncer(ipt).sync(GOOD)
    assert any(MASQ_CHAIN in ln for ln in chain_lines(ns, used))
    other = "legacy" if used == "nft" else "nft"
    assert not any(MASQ_CHAIN in ln for ln in chain_lines(ns, other))


def test_cli_cleanup_removes_exactly_routectl_rules_in_every_backend(netns: NetnsFactory, tmp_path):
    ns = netns("node")
    desired = compute_desired(node("10.244.1.0/24", "fd00:10:244:1::/64"),
                              [pool(["10.244.0.0/16", "fd00:10:244::/56"], [])])
    for backend in BACKENDS:
        foreign_rules(ns, backend)
        MasqSyncer(ipt_in(ns, backend)).sync(desired)
    args = ["agent", "--cleanup", "--netns", ns.name, "--cni-conf-dir", str(tmp_path)]
    result = CliRunner().invoke(cli_main, args)
    assert result.exit_code == 0, result.output
    assert "IPv4 (nft)" in result.output and "IPv6 (legacy)" in result.output
    for backend in BACKENDS:
        for family in (4, 6):
            tool = "iptables" if family == 4 else "ip6tables"
            assert MASQ_CHAIN not in ns.run(f"{tool}-{backend}-save", "-t", "nat").stdout
        assert FOREIGN_JUMP in chain_lines(ns, backend)
    again = CliRunner().invoke(cli_main, args)
    assert "none found" in again.output


def test_sixty_four_non_masquerade_cidrs_round_trip(netns: NetnsFactory, backend: str):
    ns = netns("node")
    extra = [f"172.{16 + i // 4}.{(i % 4) * 64}.0/18" for i in range(64)]
    desired = compute_desired(node("10.244.1.0/24"), [pool(["10.244.0.0/16"], extra)])
    assert not desired.errors
    syncer = MasqSyncer(ipt_in(ns, backend))
    assert syncer.sync(desired).writes == 1
    assert syncer.sync(desired).writes == 0


def test_cni_mtu_comes_from_the_default_route_interface_or_is_an_error(netns: NetnsFactory, tmp_path):
    """No default route and no --cni-mtu: a clear error, no file; with an IPv6-only default route the
    MTU of that interface is used."""
    ns = netns("node")
    reports: list[str] = []
    syncer = CniSyncer(conf_dir=str(tmp_path), bin_dirs=["/usr/lib/cni"], runner=Runner(ns.prefix),
                       report=reports.append)
    result = syncer.sync(node("fd00:10:244:1::/64"))
    assert result.errors and "--cni-mtu" in reports[0] and not syncer.path.exists()
    ns.ip("link", "add", "eth0", "mtu", "1380", "type", "veth", "peer", "name", "eth0p")
    ns.ip("link", "set", "eth0p", "up")
    ns.ip("link", "set", "eth0", "up")
    ns.ip("-6", "addr", "add", "fd00:a::10/64", "dev", "eth0", "nodad")
    ns.ip("-6", "route", "add", "default", "via", "fd00:a::1", "dev", "eth0")
    assert syncer.sync(node("fd00:10:244:1::/64")).written
    assert '"mtu": 1380' in syncer.path.read_text()
