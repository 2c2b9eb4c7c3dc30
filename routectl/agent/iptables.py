"""Run iptables-save / iptables-restore for the agent, on the host or inside a network namespace.

Every command goes through a `Runner` whose optional prefix (e.g. `ip netns exec NS`) lets the very same
apply code run inside a test namespace. The backend (nft or legacy) is detected once, like
kubernetes-sigs/iptables-wrappers, so routectl's rules land where the node's other rules already are.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from routectl.agent import rules
from routectl.constants import MASQ_CHAIN

log = logging.getLogger(__name__)

BACKENDS = ("nft", "legacy")
_TOOL = {4: "iptables", 6: "ip6tables"}
_HINT_CHAINS = (":KUBE-IPTABLES-HINT ", ":KUBE-KUBELET-CANARY ")


class IptablesError(RuntimeError):
    """An iptables command failed; the message carries the command and its stderr."""


@dataclass
class Runner:
    """Runs commands, optionally behind a prefix such as `("ip", "netns", "exec", "ns1")`."""

    prefix: tuple[str, ...] = ()
    timeout: float = 30.0

    def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        """Run `argv` (behind the prefix) and return stdout; IptablesError on failure."""
        cmd = [*self.prefix, *argv]
        try:
            proc = subprocess.run(
                cmd, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError as exc:
            raise IptablesError(f"{cmd[0]}: command not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise IptablesError(f"{' '.join(cmd)} timed out after {self.timeout}s") from exc
        if proc.returncode != 0:
            raise IptablesError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def has(self, binary: str) -> bool:
        """Whether `binary` is on PATH (the prefix runs in the same mount namespace, so PATH is shared)."""
        return shutil.which(binary) is not None

    def read_file(self, path: str) -> str:
        """Read a file as seen from inside the prefix's namespace (/proc/sys is per network namespace)."""
        if not self.prefix:
            with open(path, encoding="ascii") as fh:
                return fh.read()
        return self.run(["cat", path])

    def write_file(self, path: str, data: str) -> None:
        """Write a file as seen from inside the prefix's namespace."""
        if not self.prefix:
            with open(path, "w", encoding="ascii") as fh:
                fh.write(data)
            return
        self.run(["tee", path], stdin=data)


def detect_backend(runner: Runner) -> str:
    """Choose "nft" or "legacy" by looking at the rules already installed (iptables-wrappers logic)."""
    saves: dict[str, str | None] = {}
    hints: dict[str, bool] = {}
    for backend in BACKENDS:
        if not runner.has(f"iptables-{backend}-save"):
            saves[backend] = None
            hints[backend] = False
            continue
        text = ""
        for family in (4, 6):
            binary = f"{_TOOL[family]}-{backend}-save"
            if not runner.has(binary):
                continue
            try:
                text += runner.run([binary])
            except IptablesError as exc:  # e.g. legacy tables missing in the kernel
                log.debug("backend probe %s: %s", binary, exc)
        saves[backend] = text
        hints[backend] = any(line.startswith(_HINT_CHAINS) for line in text.splitlines())
    backend = rules.choose_backend(
        saves["legacy"], saves["nft"], nft_hint=hints["nft"], legacy_hint=hints["legacy"]
    )
    log.info("iptables backend: %s", backend)
    return backend


@dataclass
class Iptables:
    """iptables-save/-restore of the nat table for one backend, counting the writes it makes."""

    runner: Runner = field(default_factory=Runner)
    backend: str = "nft"
    writes: int = 0

    @classmethod
    def detect(cls, runner: Runner | None = None, backend: str = "auto") -> Iptables:
        """An Iptables bound to `backend`, or to the backend the node already uses when "auto"."""
        runner = runner or Runner()
        if backend == "auto":
            backend = detect_backend(runner)
        if backend not in BACKENDS:
            raise IptablesError(f"unknown iptables backend {backend!r} (want auto, nft or legacy)")
        return cls(runner=runner, backend=backend)

    def _binary(self, family: int, verb: str) -> str:
        return f"{_TOOL[family]}-{self.backend}-{verb}"

    def save_nat(self, family: int) -> str:
        """`iptables-save -t nat` output for the family."""
        return self.runner.run([self._binary(family, "save"), "-t", "nat"])

    def installed(self, family: int, chain: str = MASQ_CHAIN) -> rules.InstalledChain:
        """routectl's chain and jumps as currently installed."""
        return rules.parse_save(self.save_nat(family), chain)

    def restore(self, family: int, text: str) -> None:
        """Apply iptables-restore input atomically without flushing anything it does not name."""
        self.runner.run([self._binary(family, "restore"), "-w", "5", "--noflush"], stdin=text)
        self.writes += 1

    def apply(self, spec: rules.ChainSpec) -> bool:
        """Make the installed chain equal `spec`: read back, compare, write only on a difference.

        Returns True when it wrote. After a write the result is read back; a mismatch (rules the
        kernel prints differently from how we render them) is an error, since it would mean a write
        on every sync.
        """
        current = self.installed(spec.family, spec.chain)
        if rules.is_up_to_date(spec, current):
            return False
        self.restore(spec.family, rules.render_restore(spec, current))
        after = self.installed(spec.family, spec.chain)
        if not rules.is_up_to_date(spec, after):
            raise IptablesError(
                f"IPv{spec.family} chain {spec.chain} differs from the desired rules right after restore: "
                f"installed {after.raw_rules + after.jumps}"
            )
        log.info("installed IPv%d masquerade chain %s (%d rules)", spec.family, spec.chain,
                 len(rules.chain_rules(spec)) + 1)
        return True

    def cleanup(self, family: int, chain: str = MASQ_CHAIN) -> bool:
        """Remove exactly routectl's jumps and chain; True when something was removed."""
        text = rules.render_cleanup(self.installed(family, chain), chain)
        if text is None:
            return False
        self.restore(family, text)
        return True
