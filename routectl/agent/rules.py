"""Masquerade rules as data: render iptables-restore text and read back `iptables-save` output.

Pure functions only (no I/O), so the exact rules the agent installs are unit-tested. The shape follows
ip-masq-agent: one own nat chain, one jump from POSTROUTING for `! --dst-type LOCAL`, one RETURN per
non-masquerade CIDR, MASQUERADE last for traffic from the node's pod CIDR, a comment on every rule.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from routectl.constants import MASQ_CHAIN

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LINK_LOCAL = {4: ipaddress.ip_network("169.254.0.0/16"), 6: ipaddress.ip_network("fe80::/10")}
COMMENT_PREFIX = "routectl"
JUMP_COMMENT = f"{COMMENT_PREFIX}: masquerade egress that leaves the node (not to local addresses)"
MASQ_COMMENT = f"{COMMENT_PREFIX}: masquerade pod traffic to destinations outside the non-masquerade set"
_MAX_COMMENT = 256  # xt_comment limit
_SAFE_COMMENT = re.compile(r"[^A-Za-z0-9 ./:_,()+-]")


class RulesError(ValueError):
    """Inputs that cannot be turned into safe rules (wrong family, a /0 non-masquerade CIDR, ...)."""


@dataclass(frozen=True, order=True)
class NonMasq:
    """One destination CIDR that pod traffic reaches with its own source address, and why."""

    cidr: IPNetwork
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChainSpec:
    """Desired content of the masquerade chain for one IP family (4 or 6)."""

    family: int
    pod_cidrs: tuple[IPNetwork, ...]
    non_masquerade: tuple[NonMasq, ...]
    random_fully: bool = True
    chain: str = MASQ_CHAIN

    def __post_init__(self) -> None:
        if self.family not in (4, 6):
            raise RulesError(f"IP family must be 4 or 6, got {self.family!r}")
        for net in (*self.pod_cidrs, *(n.cidr for n in self.non_masquerade)):
            if net.version != self.family:
                raise RulesError(f"{net} is not an IPv{self.family} CIDR")
        if covers_family((n.cidr for n in self.non_masquerade), self.family):
            wide = [str(n.cidr) for n in self.non_masquerade if n.cidr.prefixlen == 0]
            what = f"non-masquerade CIDR {wide[0]}" if wide else "the non-masquerade CIDRs together"
            raise RulesError(f"{what} would disable masquerading for every destination")


def covers_family(cidrs: Iterable[IPNetwork], family: int) -> bool:
    """True when the `family` CIDRs among `cidrs` together cover every address (RETURN for all = open)."""
    nets = [c for c in cidrs if c.version == family]
    return any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(nets))  # type: ignore[arg-type]


@dataclass(frozen=True)
class InstalledChain:
    """What `iptables-save -t nat` shows of routectl: the chain, its rules and the POSTROUTING jumps."""

    chain_exists: bool = False
    rules: tuple[tuple[str, ...], ...] = ()
    jumps: tuple[str, ...] = ()  # raw `-A POSTROUTING ...` lines that jump to the chain
    raw_rules: tuple[str, ...] = field(default=(), compare=False)

    @property
    def present(self) -> bool:
        """Whether anything of routectl is installed in this table."""
        return self.chain_exists or bool(self.jumps)

    @property
    def working(self) -> bool:
        """Whether the installed rules still masquerade something: the chain, a jump and a MASQUERADE rule."""
        return self.chain_exists and bool(self.jumps) and any("MASQUERADE" in r for r in self.rules)


def build_chain_spec(
    family: int,
    pod_cidrs: Iterable[IPNetwork],
    non_masquerade: Iterable[tuple[IPNetwork, str]],
    *,
    masq_link_local: bool = False,
    random_fully: bool = True,
    chain: str = MASQ_CHAIN,
) -> ChainSpec:
    """Merge (cidr, reason) pairs of one family into a deduplicated, sorted ChainSpec.

    Link-local (169.254.0.0/16, fe80::/10) is added unless `masq_link_local`, as ip-masq-agent does.
    """
    reasons: dict[IPNetwork, list[str]] = {}
    pairs = list(non_masquerade)
    if not masq_link_local:
        pairs.append((LINK_LOCAL[family], "link-local"))
    for cidr, reason in pairs:
        if cidr.version != family:
            continue
        bucket = reasons.setdefault(cidr, [])
        if reason not in bucket:
            bucket.append(reason)
    entries = tuple(
        NonMasq(cidr, tuple(sorted(r)))
        for cidr, r in sorted(reasons.items(), key=lambda kv: (int(kv[0].network_address), kv[0].prefixlen))
    )
    pods = tuple(sorted({p for p in pod_cidrs if p.version == family}, key=lambda n: int(n.network_address)))
    return ChainSpec(family, pods, entries, random_fully, chain)


def _comment(text: str) -> str:
    clean = _SAFE_COMMENT.sub("_", text)[:_MAX_COMMENT]
    return f'-m comment --comment "{clean}"'


def chain_rules(spec: ChainSpec) -> list[str]:
    """The `-A <chain> ...` lines of the desired chain, in the canonical form iptables-save prints."""
    lines = []
    for entry in spec.non_masquerade:
        why = ", ".join(entry.reasons) or "configured"
        comment = _comment(f"{COMMENT_PREFIX}: do not masquerade to {why}")
        lines.append(f"-A {spec.chain} -d {entry.cidr} {comment} -j RETURN")
    for pod in spec.pod_cidrs:
        target = "MASQUERADE --random-fully" if spec.random_fully else "MASQUERADE"
        lines.append(f"-A {spec.chain} -s {pod} {_comment(MASQ_COMMENT)} -j {target}")
    return lines


def jump_rule(chain: str = MASQ_CHAIN) -> str:
    """The single POSTROUTING rule that sends non-local traffic through the chain."""
    return f"-A POSTROUTING -m addrtype ! --dst-type LOCAL {_comment(JUMP_COMMENT)} -j {chain}"


def normalise_rule(line: str) -> tuple[str, ...]:
    """Tokens of one `-A` rule with addresses canonicalised (`10.0.0.1` → `10.0.0.1/32`), for comparison."""
    tokens = shlex.split(line)
    out: list[str] = []
    take_addr = False
    for tok in tokens:
        if take_addr:
            with contextlib.suppress(ValueError):
                tok = str(ipaddress.ip_network(tok, strict=False))
            take_addr = False
        elif tok in ("-s", "-d", "--source", "--destination"):
            tok = {"--source": "-s", "--destination": "-d"}.get(tok, tok)
            take_addr = True
        out.append(tok)
    return tuple(out)


def parse_save(text: str, chain: str = MASQ_CHAIN) -> InstalledChain:
    """Extract routectl's chain and jumps from `iptables-save -t nat` output (other tables ignored)."""
    table = None
    exists = False
    rules: list[tuple[str, ...]] = []
    raw: list[str] = []
    jumps: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table != "nat":
            continue
        if line.startswith(f":{chain} "):
            exists = True
        elif line.startswith(f"-A {chain} "):
            rules.append(normalise_rule(line))
            raw.append(line)
        elif line.startswith("-A POSTROUTING ") and normalise_rule(line)[-2:] == ("-j", chain):
            jumps.append(line)
    return InstalledChain(exists, tuple(rules), tuple(jumps), tuple(raw))


def desired_rules(spec: ChainSpec) -> tuple[tuple[str, ...], ...]:
    """Normalised tokens of the desired chain rules (what parse_save returns once they are installed)."""
    return tuple(normalise_rule(line) for line in chain_rules(spec))


def is_up_to_date(spec: ChainSpec, installed: InstalledChain) -> bool:
    """True when the chain holds exactly the desired rules and POSTROUTING has exactly our one jump."""
    want_jump = normalise_rule(jump_rule(spec.chain))
    return (
        installed.chain_exists
        and installed.rules == desired_rules(spec)
        and [normalise_rule(j) for j in installed.jumps] == [want_jump]
    )


def _delete_line(append_line: str) -> str:
    return "-D" + append_line[2:]


def render_restore(spec: ChainSpec, installed: InstalledChain) -> str:
    """iptables-restore --noflush input that makes the table match `spec` in one atomic commit.

    Declaring the chain flushes it; stale or duplicate jumps are deleted by their exact saved text and
    the one wanted jump is appended only when missing, so other rules in POSTROUTING are never touched.
    """
    want_jump = normalise_rule(jump_rule(spec.chain))
    lines = ["*nat", f":{spec.chain} - [0:0]"]
    kept = False
    for raw in installed.jumps:
        if normalise_rule(raw) == want_jump and not kept:
            kept = True
            continue
        lines.append(_delete_line(raw))
    lines.extend(chain_rules(spec))
    if not kept:
        lines.append(jump_rule(spec.chain))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_cleanup(installed: InstalledChain, chain: str = MASQ_CHAIN) -> str | None:
    """iptables-restore --noflush input removing exactly routectl's jumps and chain; None if absent."""
    if not installed.present:
        return None
    lines = ["*nat"]
    lines.extend(_delete_line(raw) for raw in installed.jumps)
    if installed.chain_exists:
        lines.extend([f":{chain} - [0:0]", f"-X {chain}"])
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def rule_count(text: str) -> int:
    """Number of rule lines (`-A ...`) in save output; used to tell which iptables backend is in use."""
    return sum(1 for line in text.splitlines() if line.startswith("-"))


def choose_backend(
    legacy_save: str | None, nft_save: str | None, *, nft_hint: bool = False, legacy_hint: bool = False
) -> str:
    """Pick "nft" or "legacy" the way kubernetes-sigs/iptables-wrappers does.

    A kubelet hint chain (KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY) wins; otherwise legacy when it has
    at least 10 rules or more rules than nft, else nft (ties, e.g. a node with no rules at all, get nft,
    the default of current distributions). None means that backend's tools are missing.
    """
    if legacy_save is None and nft_save is None:
        raise RulesError("neither iptables-nft-save nor iptables-legacy-save is available")
    if legacy_save is None:
        return "nft"
    if nft_save is None:
        return "legacy"
    if nft_hint:
        return "nft"
    if legacy_hint:
        return "legacy"
    legacy_n, nft_n = rule_count(legacy_save), rule_count(nft_save)
    if legacy_n >= 10 or legacy_n > nft_n:
        return "legacy"
    return "nft"


def families_of(cidrs: Sequence[IPNetwork]) -> list[int]:
    """IP families present in `cidrs`, IPv4 first."""
    return sorted({c.version for c in cidrs})
