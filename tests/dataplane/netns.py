"""Network-namespace helpers for the dataplane tests: uniquely named namespaces that are always removed.

Everything is created inside namespaces named `rctl-<random>-<role>`; veth pairs are created with
`ip -n NS link add ... peer ... netns OTHER`, so no interface, address, route or rule ever exists in the
root namespace, not even for a moment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_SERVER = HERE / "peer_server.py"
PEER_CLIENT = HERE / "peer_client.py"

CNI_PLUGIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
REQUIRED_TOOLS = ("ip", "cat", "tee", *(f"{tool}-{backend}-{verb}" for tool in ("iptables", "ip6tables")
                                         for backend in ("nft", "legacy") for verb in ("save", "restore")))


def sh(*argv: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its stderr on failure."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def missing_prerequisite() -> str | None:
    """Why the dataplane tests cannot run here (not root, a tool missing, netns refused), or None."""
    if os.geteuid() != 0:
        return "dataplane tests need root (network namespaces and iptables)"
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            return f"dataplane tests need {tool} (make system-deps installs iproute2 and iptables)"
    for plugin in CNI_PLUGINS:
        if not os.access(os.path.join(CNI_PLUGIN_DIR, plugin), os.X_OK):
            return (f"dataplane tests need the CNI plugin {CNI_PLUGIN_DIR}/{plugin} "
                    "(make system-deps installs containernetworking-plugins)")
    name = f"rctl-probe-{secrets.token_hex(3)}"
    proc = sh("ip", "netns", "add", name, check=False)
    if proc.returncode != 0:
        return f"cannot create a network namespace: {proc.stderr.strip()}"
    try:
        for backend in ("nft", "legacy"):
            probe = sh("ip", "netns", "exec", name, f"iptables-{backend}-save", "-t", "nat", check=False)
            if probe.returncode != 0:
                return f"iptables ({backend}) does not work inside a namespace: {probe.stderr.strip()}"
    finally:
        sh("ip", "netns", "del", name, check=False)
    return None


@dataclass
class Netns:
    """One network namespace created by a test."""

    name: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """Command prefix that runs a program inside this namespace."""
        return ("ip", "netns", "exec", self.name)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ip -n NAME ...`."""
        return sh("ip", "-n", self.name, *args, check=check)

    def run(self, *argv: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace."""
        return sh(*self.prefix, *argv, stdin=stdin, check=check)

    def sysctl(self, key: str, value: str) -> None:
        """Set a sysctl of this namespace (through /proc/sys as seen from inside it)."""
        self.run("tee", "/proc/sys/" + key.replace(".", "/"), stdin=value + "\n")

    def read_sysctl(self, key: str) -> str:
        """Read a sysctl of this namespace."""
        return self.run("cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()


@dataclass
class NetnsFactory:
    """Creates namespaces under one random prefix and removes all of them (and their processes)."""

    prefix: str = field(default_factory=lambda: f"rctl-{secrets.token_hex(3)}-")
    created: list[Netns] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def __call__(self, role: str, lo_up: bool = True) -> Netns:
        """A new namespace `<prefix><role>`; `lo_up=False` leaves `lo` down (a pod's, for CNI loopback)."""
        ns = Netns(self.prefix + role)
        sh("ip", "netns", "add", ns.name)
        self.created.append(ns)
        if lo_up:
            ns.ip("link", "set", "lo", "up")
        return ns

    def spawn(self, ns: Netns, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a long-running process inside `ns`; it is killed at cleanup."""
        proc = subprocess.Popen([*ns.prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.processes.append(proc)
        return proc

    def cleanup(self) -> list[str]:
        """Kill our processes and delete our namespaces; returns the errors met (empty when clean)."""
        errors = []
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                errors.append(f"process {proc.pid} did not exit")
        for ns in reversed(self.created):
            pids = sh("ip", "netns", "pids", ns.name, check=False).stdout.split()
            if pids:
                errors.append(f"namespace {ns.name} still had processes {pids}")
            proc = sh("ip", "netns", "del", ns.name, check=False)
            if proc.returncode != 0:
                errors.append(f"ip netns del {ns.name}: {proc.stderr.strip()}")
        return errors

    def leftovers(self) -> list[str]:
        """Namespaces with our prefix that still exist."""
        names = sh("ip", "netns", "list").stdout.split("\n")
        return [line.split()[0] for line in names if line.startswith(self.prefix)]


def veth(a: Netns, a_name: str, b: Netns, b_name: str) -> None:
    """A veth pair with one end in each namespace, created directly there (never in the root namespace)."""
    a.ip("link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b.name)
    a.ip("link", "set", a_name, "up")
    b.ip("link", "set", b_name, "up")


def start_peer_server(factory: NetnsFactory, ns: Netns, port: int, family: int = 4) -> subprocess.Popen[str]:
    """A TCP server in `ns` (IPv4 or IPv6 only) that answers every connection with the peer address it saw."""
    proc = factory.spawn(ns, [sys.executable, str(PEER_SERVER), str(port), str(family)])
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"peer server in {ns.name} did not start: {line!r} {err}")
    return proc


def peer_seen(client: Netns, host: str, port: int, timeout: float = 2.0) -> str | None:
    """Connect from `client` to host:port; the source address the server saw, or None if unreachable."""
    proc = client.run(sys.executable, str(PEER_CLIENT), host, str(port), str(timeout), check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


def root_namespace_snapshot() -> dict[str, list[str]]:
    """Links, addresses, routes and iptables rules of the root namespace, to prove tests add nothing."""
    snap = {
        "links": [" ".join(line.split()[:3]) for line in sh("ip", "-o", "link", "show").stdout.splitlines()],
        "addrs": sh("ip", "-o", "addr", "show").stdout.splitlines(),
        "routes": sh("ip", "route", "show", "table", "all").stdout.splitlines(),
    }
    for tool in ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"):
        if shutil.which(tool):
            out = sh(tool, check=False).stdout
            snap[tool] = [ln for ln in out.splitlines() if ln.startswith(("-", "*", ":"))]
            snap[tool] = [ln.split(" [")[0] if ln.startswith(":") else ln for ln in snap[tool]]
    return snap
