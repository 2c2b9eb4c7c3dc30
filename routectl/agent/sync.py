"""Turn the Node and the PodCIDRPools into desired masquerade chains, and apply them keeping the last good.

`compute_desired` is pure (Node and pool objects as plain dicts in, ChainSpecs out); `MasqSyncer` applies
the result with `Iptables` and owns the keep-last-good rule: bad input never removes or opens rules.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from routectl.agent import rules
from routectl.agent.iptables import Iptables
from routectl.agent.notify import report_changed
from routectl.agent.sysctl import ensure_forwarding
from routectl.ipam.errors import InvalidCIDRError, PoolSpecError
from routectl.ipam.model import PoolSpec
from routectl.ipam.netutil import parse_cidr
from routectl.ipam.validate import non_masquerade_problem
from routectl.routes.model import node_pod_cidrs as pod_cidr_texts

if TYPE_CHECKING:
    from routectl.agent.cnisync import CniResult
    from routectl.agent.vxlan import OverlayResult

log = logging.getLogger(__name__)

IPNetwork = rules.IPNetwork


@dataclass(frozen=True)
class Desired:
    """Desired chain per IP family, plus the input errors met while computing it.

    When `errors` is not empty the specs were built from the valid inputs only (more masquerading,
    never less) and are used only if nothing better is known.
    """

    specs: Mapping[int, rules.ChainSpec]
    errors: tuple[str, ...] = ()
    pod_cidrs: tuple[IPNetwork, ...] = ()


def node_pod_cidrs(node: Mapping[str, Any]) -> tuple[tuple[IPNetwork, ...], list[str]]:
    """The Node's pod CIDRs (spec.podCIDRs, else spec.podCIDR) and errors for unparsable ones."""
    raw = list(pod_cidr_texts(node))
    cidrs: list[IPNetwork] = []
    errors = []
    for text in raw:
        try:
            cidrs.append(ipaddress.ip_network(str(text), strict=True))
        except ValueError as exc:
            errors.append(f"node {_name(node)}: invalid podCIDR {text!r}: {exc}")
    return tuple(cidrs), errors


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def _parse_all(values: Iterable[str], what: str, errors: list[str]) -> list[tuple[IPNetwork, str]]:
    """Parsed CIDRs with the field path each came from; unparsable ones become errors."""
    nets = []
    for i, value in enumerate(values):
        where = f"{what}[{i}]"
        try:
            nets.append((parse_cidr(value, where), where))
        except InvalidCIDRError as exc:
            errors.append(str(exc))
    return nets


def _not_too_wide(nets: Iterable[tuple[IPNetwork, str]], reason: str, errors: list[str]
                  ) -> list[tuple[IPNetwork, str]]:
    """(cidr, reason) pairs for the RETURN rules, without the entries the shared width rule refuses.

    A refused entry is dropped alone (its destinations stay masqueraded) and reported, so one bad entry
    never costs the node its other rules: the same rule as validate_pool, so the controller agrees.
    """
    out = []
    for net, where in nets:
        problem = non_masquerade_problem(net, where)
        if problem is None:
            out.append((net, reason))
        else:
            errors.append(f"{problem} (entry ignored: traffic to it stays masqueraded)")
    return out


def compute_desired(
    node: Mapping[str, Any], pools: Iterable[Mapping[str, Any]], *, random_fully: bool = True
) -> Desired:
    """Desired chains for this node: RETURN for every pool CIDR, the node's pool's extra
    non-masquerade CIDRs and link-local (unless that pool sets masqLinkLocal); MASQUERADE from the
    node's pod CIDRs. If no pool contains the node's CIDR, every pool's extras count and link-local
    stays unmasqueraded. One spec per family the node has a pod CIDR in, always: bad entries are
    dropped and reported, never the whole family (never no rules, never open rules).
    """
    pod_cidrs, errors = node_pod_cidrs(node)
    specs: list[tuple[str, PoolSpec]] = []
    for obj in pools:
        try:
            specs.append((_name(obj), PoolSpec.from_resource(obj)))
        except PoolSpecError as exc:
            errors.append(str(exc))
    pool_cidrs: list[tuple[IPNetwork, str]] = []
    extras: dict[str, list[tuple[IPNetwork, str]]] = {}
    owners: list[tuple[str, PoolSpec]] = []
    for name, spec in specs:
        parsed = _parse_all(spec.cidrs, f"PodCIDRPool {name}: spec.cidrs", errors)
        pool_cidrs.extend(_not_too_wide(parsed, f"pool {name}", errors))
        what = f"PodCIDRPool {name}: spec.masquerade.nonMasqueradeCIDRs"
        extras[name] = _not_too_wide(_parse_all(spec.masquerade.non_masquerade_cidrs, what, errors),
                                     f"pool {name} nonMasqueradeCIDRs", errors)
        nets = [net for net, _ in parsed]
        if any(p.version == n.version and p.subnet_of(n) for p in pod_cidrs for n in nets):  # type: ignore[arg-type]
            owners.append((name, spec))
    extra = [pair for name, _ in (owners or specs) for pair in extras[name]]
    masq_link_local = bool(owners) and all(spec.masquerade.masq_link_local for _, spec in owners)
    out: dict[int, rules.ChainSpec] = {}
    for family in rules.families_of(pod_cidrs):
        # Each entry is at least a /8, yet many together (several pools) could still cover the family:
        # then fall back to fewer RETURN rules (more masquerading, never less) instead of no chain.
        for candidates, dropped in (([*pool_cidrs, *extra], ""),
                                    (pool_cidrs, "every nonMasqueradeCIDR"),
                                    ([], "every pool CIDR and nonMasqueradeCIDR")):
            try:
                out[family] = rules.build_chain_spec(
                    family, pod_cidrs, candidates,
                    masq_link_local=masq_link_local, random_fully=random_fully,
                )
            except rules.RulesError as exc:
                errors.append(f"IPv{family} masquerade rules: {exc}")
                continue
            if dropped:
                errors.append(f"IPv{family} masquerade rules: ignored {dropped} to keep egress masqueraded")
            break
    return Desired(out, tuple(errors), pod_cidrs)


@dataclass
class SyncResult:
    """What one sync did: writes made, families handled, errors met, whether last-good rules were kept;
    `cni` is the CNI config sync's result when the agent manages the CNI config."""

    writes: int = 0
    families: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()
    kept_last_good: bool = False
    cni: CniResult | None = None
    overlay: OverlayResult | None = None  # the VXLAN overlay sync's result when the agent runs it


@dataclass
class MasqSyncer:
    """Applies desired chains; on bad input keeps the last good rules and reports the error once.

    With no last good rules (fresh agent, nothing installed, e.g. after a reboot) it installs the chain
    built without the rejected entries: that masquerades more, never less, and never leaves no rules.
    """

    iptables: Iptables
    report: Callable[[str], None] | None = None
    ensure_sysctl: bool = True
    last_good: Mapping[int, rules.ChainSpec] | None = None
    _reported: str | None = field(default=None, repr=False)

    def sync(self, desired: Desired) -> SyncResult:
        """Install `desired` (or the last good rules when it has errors); zero writes when unchanged.

        Raises SysctlError (after the rules are in place) when forwarding is off and cannot be enabled.
        """
        result = SyncResult(errors=desired.errors)
        if desired.errors:
            specs, fresh = self._fallback(desired, result)
            self._report(desired.errors, result.kept_last_good, fresh)
        else:
            specs = dict(desired.specs)
            self.last_good = specs
            self._reported = None
        if not specs and not desired.pod_cidrs:
            log.info("node has no podCIDR yet; no masquerade rules to install")
        before = self.iptables.writes
        for spec in sorted(specs.values(), key=lambda s: s.family):
            self.iptables.apply(spec)
        result.writes = self.iptables.writes - before
        result.families = tuple(sorted(specs))
        if self.ensure_sysctl:
            # after the rules, so a read-only /proc/sys never keeps masquerade from being installed
            for family in result.families:
                ensure_forwarding(self.iptables.runner, family)
        return result

    def _fallback(self, desired: Desired, result: SyncResult) -> tuple[dict[int, rules.ChainSpec], bool]:
        """Per family: the last good rules if known, else working installed rules (left alone), else the
        desired chain built from the valid inputs only (masquerades more, never less); whether any
        family got that fresh chain. What is installed here becomes the rules kept (and repaired) next
        time, so a node that booted with bad input keeps its chain even if someone flushes it later."""
        known = dict(self.last_good or {})
        specs: dict[int, rules.ChainSpec] = {}
        fresh = False
        for family in sorted(set(known) | set(desired.specs)):
            if family in known:
                result.kept_last_good = True
                log.warning("bad masquerade input; keeping the last good IPv%d rules", family)
                specs[family] = known[family]
            elif self.iptables.installed(family, desired.specs[family].chain).working:
                result.kept_last_good = True
                log.warning("bad masquerade input; keeping the IPv%d rules already installed", family)
            else:
                log.warning("bad masquerade input, no IPv%d rules known: installing the chain without the "
                            "rejected entries", family)
                specs[family] = desired.specs[family]
                fresh = True
        self.last_good = specs
        return specs, fresh

    def _report(self, errors: tuple[str, ...], kept: bool, fresh: bool) -> None:
        message = "; ".join(errors)
        for err in errors:
            log.error("masquerade input rejected: %s", err)
        action = " and ".join(
            part for part, on in (("keeping the last good rules", kept),
                                  ("installed the rules without the rejected entries", fresh)) if on
        ) or "no rules to install"
        self._reported = report_changed(self.report, self._reported, message,
                                        f"invalid masquerade input, {action}: {message}")
