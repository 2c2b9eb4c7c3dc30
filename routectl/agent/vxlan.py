"""Apply the overlay state over netlink (pyroute2): read what the device holds, write only the diff.

Reads are netlink dumps (device, its addresses, gateway routes in the main table, permanent neighbours
and FDB entries); writes are exactly the ops of `overlay.diff`, so an unchanged sync makes none and the
periodic sync repairs anything removed behind our back. Everything lives on our own device: deleting it
(`--cleanup`) removes every route, neighbour and FDB entry the agent made, and nothing else.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from routectl.agent.notify import report_changed
from routectl.agent.overlay import (
    Device,
    Fdb,
    Neigh,
    Op,
    OverlaySettings,
    OverlayState,
    Route,
    any_overlay_pool,
    compute_overlay,
    diff,
)

log = logging.getLogger(__name__)

NUD_PERMANENT = 0x80
RTNH_F_ONLINK = 4
RT_TABLE_MAIN = 254
AF_BRIDGE = 7
IFF_UP = 1
_ZERO_MAC = "00:00:00:00:00:00"


class OverlayError(RuntimeError):
    """The overlay cannot be applied (a foreign device holds our name, netlink refused a write)."""


@dataclass
class OverlayResult:
    """What one overlay sync did."""

    writes: int = 0
    errors: tuple[str, ...] = ()
    peers: int = 0


@dataclass
class VxlanSyncer:
    """Keeps the node's VXLAN device equal to the desired `OverlayState`; `netns` for tests."""

    device: str
    netns: str | None = None
    report: Callable[[str], None] | None = None
    writes: int = 0
    _reported: str | None = field(default=None, repr=False)
    _ifindex: int | None = field(default=None, repr=False)

    @contextmanager
    def _ipr(self) -> Iterator[IPRoute]:
        ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    def read(self) -> OverlayState:
        """The device and the entries on it as they are now (empty state when there is no device)."""
        with self._ipr() as ipr:
            return self._read(ipr)

    def _read(self, ipr: IPRoute) -> OverlayState:
        found = ipr.link_lookup(ifname=self.device)
        if not found:
            self._ifindex = None
            return OverlayState()
        idx = self._ifindex = int(found[0])
        link = ipr.get_links(idx)[0]
        info = link.get("IFLA_LINKINFO")
        if info is None or info.get("IFLA_INFO_KIND") != "vxlan":
            raise OverlayError(f"device {self.device} exists and is not a VXLAN device; "
                               "not touching it (choose another --overlay-device)")
        data = info.get("IFLA_INFO_DATA")
        addrs = []
        for a in ipr.get_addr(index=idx):
            ip = ipaddress.ip_address(a.get("IFA_ADDRESS"))
            if not ip.is_link_local:
                addrs.append(f"{ip}/{a['prefixlen']}")
        dev = Device(self.device, int(data.get("IFLA_VXLAN_ID")), int(data.get("IFLA_VXLAN_PORT")),
                     str(data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6") or ""),
                     str(link.get("IFLA_ADDRESS")), int(link.get("IFLA_MTU")), tuple(sorted(addrs)),
                     bool(link["flags"] & IFF_UP))
        routes = set()
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=fam, oif=idx, table=RT_TABLE_MAIN):
                gw = r.get("RTA_GATEWAY")
                if gw is not None and r.get("RTA_DST") is not None:
                    routes.add(Route(f"{r.get('RTA_DST')}/{r['dst_len']}", str(gw)))
        neighs = {Neigh(str(n.get("NDA_DST")), str(n.get("NDA_LLADDR")))
                  for n in ipr.get_neighbours(ifindex=idx)
                  if n["state"] & NUD_PERMANENT and n["family"] in (socket.AF_INET, socket.AF_INET6)}
        fdb = {Fdb(str(n.get("NDA_LLADDR")), str(n.get("NDA_DST")))
               for n in ipr.fdb("dump", ifindex=idx)
               if n["ifindex"] == idx and n.get("NDA_DST") and n.get("NDA_LLADDR") != _ZERO_MAC}
        return OverlayState(dev, frozenset(routes), frozenset(neighs), frozenset(fdb))

    def sync(self, desired: OverlayState) -> OverlayResult:
        """Make the device match `desired`; returns the writes made and the errors met (reported once)."""
        errors = list(desired.errors)
        before = self.writes
        try:
            with self._ipr() as ipr:
                ops = diff(desired, self._read(ipr))
                for op in ops:
                    try:
                        self._apply(ipr, op)
                    except NetlinkError as exc:
                        errors.append(f"{op.action} {op.kind} {op.item}: {exc}")
        except (OverlayError, NetlinkError, OSError) as exc:
            errors.append(str(exc))
        result = OverlayResult(self.writes - before, tuple(errors), len(desired.overlay_peers))
        self._report(result.errors)
        return result

    def has_device(self) -> bool:
        """Whether a link with our device's name exists (one netlink request)."""
        with self._ipr() as ipr:
            return bool(ipr.link_lookup(ifname=self.device))

    def cleanup(self) -> bool:
        """Delete our VXLAN device (and with it every entry the agent made); True when it existed."""
        with self._ipr() as ipr:
            state = self._read(ipr)
            if state.device is None:
                return False
            self._apply(ipr, Op("del", "device", self.device))
            return True

    def _index(self, ipr: IPRoute) -> int:
        """Our device's ifindex, looked up once per device incarnation (not once per entry)."""
        if self._ifindex is None:
            self._ifindex = int(ipr.link_lookup(ifname=self.device)[0])
        return self._ifindex

    def _apply(self, ipr: IPRoute, op: Op) -> None:
        item = op.item
        self.writes += 1
        if op.kind == "device":
            self._ifindex = None  # created or deleted: look it up again
        if op.kind == "device" and op.action == "del":
            ipr.link("del", index=self._index(ipr))
        elif op.kind == "device" and isinstance(item, Device):
            extra = {"mtu": item.mtu} if item.mtu is not None else {}
            local = ("vxlan_local" if ipaddress.ip_address(item.local).version == 4 else "vxlan_local6")
            ipr.link("add", ifname=item.name, kind="vxlan", vxlan_id=item.vni, vxlan_port=item.port,
                     vxlan_learning=0, address=item.mac, **{local: item.local}, **extra)
        elif op.kind == "mtu" and isinstance(item, Device):
            ipr.link("set", index=self._index(ipr), mtu=item.mtu)
        elif op.kind == "up":
            ipr.link("set", index=self._index(ipr), state="up")
        elif op.kind == "addr" and isinstance(item, str):
            ip, plen = item.split("/")
            ipr.addr(op.action, index=self._index(ipr), address=ip, prefixlen=int(plen))
        elif op.kind == "fdb" and isinstance(item, Fdb):
            action = {"add": "append", "replace": "replace", "del": "del"}[op.action]
            ipr.fdb(action, ifindex=self._index(ipr), lladdr=item.mac, dst=item.dst,
                    **({} if op.action == "del" else {"state": NUD_PERMANENT}))
        elif op.kind == "neigh" and isinstance(item, Neigh):
            ipr.neigh(op.action, dst=item.ip, lladdr=item.mac, ifindex=self._index(ipr),
                      **({} if op.action == "del" else {"state": NUD_PERMANENT}))
        elif op.kind == "route" and isinstance(item, Route):
            dst = ipaddress.ip_network(item.dst)
            ipr.route(op.action, dst=item.dst, gateway=item.gateway, oif=self._index(ipr),
                      flags=RTNH_F_ONLINK, family=socket.AF_INET if dst.version == 4 else socket.AF_INET6,
                      table=RT_TABLE_MAIN)
        else:  # pragma: no cover - diff() makes no other ops
            raise OverlayError(f"unknown overlay op {op}")

    def _report(self, errors: tuple[str, ...]) -> None:
        message = "; ".join(errors)
        for err in errors:
            log.error("overlay: %s", err)
        if not errors:
            self._reported = None
            return
        self._reported = report_changed(self.report, self._reported, message,
                                        f"overlay not fully applied: {message}")


@dataclass
class OverlaySync:
    """The agent's overlay step: desired state from every Node, the underlay MTU, applied by `syncer`."""

    settings: OverlaySettings
    syncer: VxlanSyncer
    underlay_mtu: Callable[[], int | None] = lambda: None

    def sync(self, node_name: str, nodes: Callable[[], Iterable[Mapping[str, Any]]],
             pools: Iterable[Mapping[str, Any]]) -> OverlayResult:
        """Compute this node's overlay from every Node (`nodes()`, a list call) and apply it. Without any
        Overlay pool and without our device nothing can need the overlay: then no Node list at all, so a
        cluster that never opts in pays nothing for it."""
        if not any_overlay_pool(pools) and not self.syncer.has_device():
            return OverlayResult()
        desired = compute_overlay(node_name, nodes(), self.settings, underlay_mtu=self.underlay_mtu())
        return self.syncer.sync(desired)
