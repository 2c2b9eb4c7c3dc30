"""Keep the node's CNI config file in line with its podCIDRs: check, render, write atomically, report.

The rendering is pure (routectl/agent/cni.py); this module does the small I/O around it: the primary
interface's MTU (/proc/net and /sys, in the agent's network namespace), which plugin binaries exist, and the
write itself (temp file, fsync, rename, fsync of the directory) only when the content differs. Bad
input never touches the file already there: the runtime keeps using the previous config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routectl.agent import cni
from routectl.agent.iptables import IptablesError, Runner
from routectl.agent.notify import report_changed
from routectl.agent.sync import node_pod_cidrs

log = logging.getLogger(__name__)


class CniWriteError(OSError):
    """The config file could not be written (read-only or missing directory, disk full, ...)."""


def read_primary_mtu(runner: Runner) -> int | None:
    """MTU of the interface holding the default route (IPv4 first, then IPv6), or None if there is none.

    Read from /proc/net and /sys/class/net (as seen in the runner's network namespace), so the agent's
    image needs no iproute2.
    """
    for path, parse in (("/proc/net/route", cni.parse_default_dev_v4),
                        ("/proc/net/ipv6_route", cni.parse_default_dev_v6)):
        try:
            dev = parse(runner.read_file(path))
            if dev:
                return cni.parse_mtu(runner.read_file(f"/sys/class/net/{dev}/mtu"))
        except (OSError, IptablesError) as exc:  # IptablesError: Runner's error for a failed command
            log.debug("reading the default route from %s: %s", path, exc)
    return None


def list_plugins(dirs: Sequence[str]) -> dict[str, list[str]]:
    """Executable file names in each existing directory of `dirs` (missing directories left out)."""
    found: dict[str, list[str]] = {}
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        found[d] = sorted(e.name for e in entries if e.is_file() and os.access(e.path, os.X_OK))
    return found


def write_atomically(path: Path, content: str) -> bool:
    """Write `content` to `path` unless it already holds exactly that; True when it wrote.

    A hidden temp file in the same directory (its name has no CNI extension, so a runtime never loads
    it half-written) is fsynced and renamed over the target, then the directory is fsynced: a reader
    sees the old file or the new one, never a mix, also across a crash.
    """
    try:
        if path.read_text(encoding="utf-8") == content:
            return False
    except (OSError, UnicodeDecodeError) as exc:  # missing or unreadable: the write below says why
        log.debug("reading %s: %s", path, exc)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, content.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CniWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return True


@dataclass
class CniResult:
    """What one CNI sync did: whether it wrote, and the errors met (the previous file then stays)."""

    written: bool = False
    errors: tuple[str, ...] = ()
    content: str | None = None  # what the file should hold, when it could be rendered


@dataclass
class CniSyncer:
    """Writes the node's conflist from its podCIDRs; on any problem leaves the file alone and reports once."""

    conf_dir: str = cni.DEFAULT_CONF_DIR
    conf_file: str = cni.DEFAULT_CONF_FILE
    settings: cni.CniSettings = field(default_factory=cni.CniSettings)
    bin_dirs: Sequence[str] = cni.DEFAULT_BIN_DIRS
    mtu: int | None = None  # explicit pod MTU (--cni-mtu); the primary interface's when None
    runner: Runner = field(default_factory=Runner)
    report: Callable[[str], None] | None = None
    writes: int = 0
    _reported: str | None = field(default=None, repr=False)
    _warned_shadow: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        cni.validate_conf_file(self.conf_file)

    @property
    def path(self) -> Path:
        """The config file this syncer owns."""
        return Path(self.conf_dir) / self.conf_file

    def sync(self, node: Mapping[str, Any], *, overlay: bool = False) -> CniResult:
        """Render the config for `node` and write it if it differs; never before the node has a podCIDR.

        `overlay` says the node's traffic may be VXLAN-encapsulated (lowers the default MTU).
        """
        try:
            content = self._desired(node, overlay)
        except cni.CniConfigError as exc:
            return self._failed(str(exc))
        if content is None:
            log.info("node has no podCIDR yet; CNI config %s not written (node stays NotReady)", self.path)
            return CniResult()
        self._warn_shadowing()
        try:
            written = write_atomically(self.path, content)
        except CniWriteError as exc:
            return self._failed(f"{exc}; the previous CNI config (if any) stays in place", content)
        if written:
            self.writes += 1
            log.info("wrote CNI config %s", self.path)
        self._reported = None
        return CniResult(written=written, content=content)

    def _desired(self, node: Mapping[str, Any], overlay: bool) -> str | None:
        pod_cidrs, errors = node_pod_cidrs(node)
        if errors:
            raise cni.CniConfigError("; ".join(errors) + "; CNI config not changed")
        if not pod_cidrs:
            return None
        link_mtu = None if self.mtu is not None else read_primary_mtu(self.runner)
        conflist = cni.build_conflist(pod_cidrs, cni.pod_mtu(link_mtu, explicit=self.mtu, overlay=overlay),
                                      self.settings)
        missing = cni.missing_plugins(cni.plugin_types(conflist), list_plugins(self.bin_dirs))
        if missing:
            raise cni.CniConfigError(
                f"CNI plugin(s) {', '.join(missing)} not found in {', '.join(self.bin_dirs)}: install the "
                "node's CNI plugins package (e.g. containernetworking-plugins) or set --cni-bin-dir; "
                "CNI config not changed")
        return cni.to_text(conflist)

    def _failed(self, message: str, content: str | None = None) -> CniResult:
        log.error("CNI config: %s", message)
        self._reported = report_changed(self.report, self._reported, message,
                                        f"CNI config not written: {message}")
        return CniResult(errors=(message,), content=content)

    def _warn_shadowing(self) -> None:
        try:
            names = os.listdir(self.conf_dir)
        except OSError:
            return
        shadow = tuple(cni.shadowing_configs(names, self.conf_file))
        if shadow and shadow != self._warned_shadow:
            log.warning("CNI configs %s sort before %s in %s: the runtime uses the first one, not ours",
                        ", ".join(shadow), self.conf_file, self.conf_dir)
        self._warned_shadow = shadow

    def cleanup(self) -> bool:
        """Remove our config file if it is ours (its network name matches); True when removed."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        try:
            name = json.loads(text).get("name")
        except (json.JSONDecodeError, AttributeError):
            name = None
        if name != self.settings.network_name:
            raise CniWriteError(f"{self.path} is not routectl's (network name {name!r}, expected "
                                f"{self.settings.network_name!r}); left in place")
        self.path.unlink()
        return True
