"""Report a node-level problem once per distinct message: an Event when the problem changes, not one per
sync (the agent resyncs every minute), and a failing post never breaks the sync that found the problem."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def report_changed(report: Callable[[str], None] | None, previous: str | None, message: str,
                   text: str) -> str:
    """Post `text` through `report` when `message` differs from `previous`; returns the message to
    remember as reported (a failed post is logged and still remembered: the next sync would fail alike)."""
    if message != previous and report is not None:
        try:
            report(text)
        except Exception:  # reporting must never break the sync
            log.exception("could not report: %s", text)
    return message
