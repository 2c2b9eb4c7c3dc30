"""Which transport a node gets when its route does not fit (pure)."""

from __future__ import annotations

from routectl.cloud.base import REASON_ROUTE_LIMIT
from routectl.cloud.limits import OVERLAY_HINT
from routectl.constants import REASON_ROUTE_CREATED
from routectl.routes.fallback import (
    EVENT_ROUTE_OVERLAY,
    EVENT_ROUTE_RESTORED,
    REASON_ROUTE_OVERLAY,
    TransportCounts,
    count,
    decide,
)
from routectl.routes.model import NodeRouteStatus

LIMIT = NodeRouteStatus(False, REASON_ROUTE_LIMIT, "aws route table rtb-1: 50/50 routes used")
CREATED = NodeRouteStatus(True, REASON_ROUTE_CREATED, "1 route(s) programmed")
PENDING = NodeRouteStatus(False, "RoutePending", "1 route(s) not programmed yet")


def test_default_none_passes_the_verdict_through() -> None:
    for status in (LIMIT, CREATED, PENDING):
        d = decide(status, fallback=False, on_overlay=False)
        assert d.status is status and not d.overlay and d.event is None


def test_refused_for_the_limit_moves_to_the_overlay_once() -> None:
    d = decide(LIMIT, fallback=True, on_overlay=False)
    assert d.overlay and d.status.ok and d.status.reason == REASON_ROUTE_OVERLAY
    assert "rtb-1: 50/50" in d.status.message and "UDP 8472" in d.status.message
    assert "cannot verify the firewall" in d.status.message
    assert d.event is not None and d.event[0] == EVENT_ROUTE_OVERLAY
    again = decide(LIMIT, fallback=True, on_overlay=True)
    assert again.overlay and again.event is None  # no Event, no write on every resync


def test_overlay_is_left_only_once_the_route_exists() -> None:
    assert decide(PENDING, fallback=True, on_overlay=True).overlay  # no window without a path
    assert decide(NodeRouteStatus(False, "CloudError", "x"), fallback=True, on_overlay=True).overlay
    d = decide(CREATED, fallback=True, on_overlay=True)
    assert not d.overlay and d.status is CREATED
    assert d.event is not None and d.event[0] == EVENT_ROUTE_RESTORED


def test_other_failures_do_not_move_a_routed_node() -> None:
    assert not decide(PENDING, fallback=True, on_overlay=False).overlay
    assert not decide(NodeRouteStatus(False, "CloudError", "x"), fallback=True, on_overlay=False).overlay


def test_switch_back_to_none_takes_nodes_off_the_overlay() -> None:
    d = decide(LIMIT, fallback=False, on_overlay=True)
    assert not d.overlay and d.status is LIMIT and d.event is not None


def test_message_names_the_table_and_its_limit() -> None:
    from routectl.routes.fallback import reached_for
    from routectl.routes.model import LimitWarning

    w = LimitWarning("reached", "rtb-1", 50, 50, LIMIT.message, 1, "aws", "L-93826ACB", 51)
    other = LimitWarning("reached", "rtb-2", 50, 50, "other", 1, "aws", "L-93826ACB", 51)
    assert reached_for(LIMIT, [other, w]) is w
    d = decide(LIMIT, True, False, reached_for(LIMIT, [other, w]))
    assert "aws route table rtb-1 is at its limit of 50 routes" in d.status.message


def test_counts_and_advice() -> None:
    ds = [decide(CREATED, True, False), decide(LIMIT, True, False), decide(LIMIT, True, True),
          decide(PENDING, True, False)]
    assert count(ds) == TransportCounts(routed=1, overlay=2)
    assert "spec.routeLimitFallback: Overlay" in OVERLAY_HINT and "cannot verify the firewall" in OVERLAY_HINT
