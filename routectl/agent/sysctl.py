"""Ensure packet forwarding is on, since routed pod traffic dies silently on a node without it."""

from __future__ import annotations

import logging

from routectl.agent.iptables import IptablesError, Runner

log = logging.getLogger(__name__)

FORWARDING = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}
_NAMES = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


class SysctlError(RuntimeError):
    """Forwarding could not be read or enabled; the message says what to do about it."""


def ensure_forwarding(runner: Runner, family: int) -> bool:
    """Turn forwarding on for `family` (4 or 6) if it is off; True when it had to write."""
    path, name = FORWARDING[family], _NAMES[family]
    try:
        if runner.read_file(path).strip() == "1":
            return False
        runner.write_file(path, "1\n")
        value = runner.read_file(path).strip()
    except (OSError, IptablesError) as exc:
        raise SysctlError(
            f"cannot enable {name}=1 ({exc}); the agent needs hostNetwork and NET_ADMIN with a writable "
            f"/proc/sys, or set {name}=1 on the node yourself"
        ) from exc
    if value != "1":
        raise SysctlError(f"wrote {name}=1 but it reads back {value!r}; something on the node resets it")
    log.info("enabled %s=1", name)
    return True
