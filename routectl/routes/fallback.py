"""Pure: which transport a node gets when its route does not fit (pool spec.routeLimitFallback).

Input: the route layer's verdict for the node (NodeRouteStatus), whether the node's pool opts in to the
overlay fallback, and whether the node is on the overlay now (its `routectl.io/transport` annotation).
Output: the annotation wanted, the NetworkUnavailable condition to write and the Event to post.

Rules: a node moves to the overlay only when its route was refused for the route limit and its pool
says `Overlay`; it leaves the overlay only once its route exists (the agents drop the VXLAN path when
the annotation goes, so there is never a moment without a path); while it is on the overlay, a pending
or failed route keeps it there. With `None` (the default) the verdict is passed through unchanged, as
before this module existed; a pool switched back to `None` takes its nodes off the overlay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from routectl.cloud.base import REASON_ROUTE_LIMIT
from routectl.cloud.limits import OVERLAY_HINT
from routectl.constants import REASON_ROUTE_CREATED
from routectl.routes.model import LimitWarning, NodeRouteStatus

REASON_ROUTE_OVERLAY = "RouteOverlay"
EVENT_ROUTE_OVERLAY = "RouteOverlay"  # the node moved to the overlay
EVENT_ROUTE_RESTORED = "RouteRestored"  # the node left the overlay: its route exists now
DEFAULT_VXLAN_PORT = 8472

FIREWALL_NOTE = (f"UDP {DEFAULT_VXLAN_PORT} (the agents' --overlay-port) must be open between nodes in the "
                 "security groups / firewall rules; routectl cannot verify the firewall")
FALLBACK_HINT = "or set spec.routeLimitFallback: Overlay on the pool so such nodes use the VXLAN overlay"


def switch_already_on(message: str) -> str:
    """A route-limit message for a pool whose routeLimitFallback is already Overlay: the same text without
    the advice to turn that switch on (or to move to an overlay): what is left is raising the quota."""
    return message.replace(f", {OVERLAY_HINT}", "").replace(f" {OVERLAY_HINT}", "")


def overflow_message(routed: int, overlay: int, reached: str | None) -> str:
    """The pool's RoutesOverflowing message: how many nodes ride the overlay and how to route them."""
    why = f" {switch_already_on(reached)}" if reached else ""
    return (f"{overlay} node(s) ride the VXLAN overlay because the route table is full ({routed} routed); "
            f"raise the route quota to give them routes (they move back oldest first).{why}")


@dataclass(frozen=True)
class TransportDecision:
    """What the controller writes for one node: its annotation, its condition, and an Event if any."""

    overlay: bool
    status: NodeRouteStatus
    event: tuple[str, str] | None = None  # (reason, message)

    @property
    def changed(self) -> bool:
        """Whether the annotation must be written (added or removed)."""
        return self.event is not None


def reached_for(status: NodeRouteStatus, warnings: Iterable[LimitWarning]) -> LimitWarning | None:
    """The "reached" warning behind a RouteLimitReached verdict (the reconciler gives the node that
    warning's message), so the overlay message can name the table and its limit."""
    return next((w for w in warnings if w.kind == "reached" and w.message == status.message), None)


def decide(status: NodeRouteStatus, fallback: bool, on_overlay: bool,
           warning: LimitWarning | None = None) -> TransportDecision:
    """The node's transport given the route verdict, the pool's switch and the current annotation;
    `warning` (see reached_for) names the full table and its limit in the condition message."""
    if status.ok and status.reason == REASON_ROUTE_CREATED:
        if on_overlay:
            return TransportDecision(False, status, (EVENT_ROUTE_RESTORED,
                                     "route exists now; pod traffic leaves the VXLAN overlay for the route"))
        return TransportDecision(False, status)
    if not fallback:
        return TransportDecision(False, status, (EVENT_ROUTE_RESTORED,
                                 "pool has routeLimitFallback: None; node taken off the VXLAN overlay")
                                 if on_overlay else None)
    if status.reason == REASON_ROUTE_LIMIT or on_overlay:
        if warning is not None:
            why = (f"{warning.provider} route table {warning.table} is at its limit of {warning.limit} "
                   f"routes ({warning.used} used)").lstrip()
        else:
            why = status.message or "route limit reached"
        message = f"pod traffic goes over the VXLAN overlay: {why}. {FIREWALL_NOTE}."
        overlay_status = NodeRouteStatus(True, REASON_ROUTE_OVERLAY, message)
        if on_overlay:
            return TransportDecision(True, overlay_status)
        return TransportDecision(True, overlay_status, (EVENT_ROUTE_OVERLAY, message))
    return TransportDecision(False, status)


@dataclass(frozen=True)
class TransportCounts:
    """Pool status: nodes whose traffic uses their route, and nodes on the overlay."""

    routed: int = 0
    overlay: int = 0


def count(decisions: Iterable[TransportDecision]) -> TransportCounts:
    """Routed (route created) and overlay nodes among `decisions` (others are neither yet)."""
    routed = overlay = 0
    for d in decisions:
        if d.overlay:
            overlay += 1
        elif d.status.ok and d.status.reason == REASON_ROUTE_CREATED:
            routed += 1
    return TransportCounts(routed, overlay)
