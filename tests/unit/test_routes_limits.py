"""Pure tests of the route-limit planner: what fits, what is refused, warnings naming both ways out."""

from __future__ import annotations

import pytest

from routectl.cloud.limits import fit_creates
from routectl.routes.model import RouteAction, TableCapacity

AWS_CAP = dict(quota_name="the Service Quotas value vpc/L-93826ACB 'Routes per route table'",
               raise_to_hint="adjustable up to 1,000; performance may degrade past 50", provider="aws")


def _creates(table: str, n: int) -> list[RouteAction]:
    return [RouteAction("create", table, f"10.244.{i}.0/24", "eni", f"n{i}") for i in range(n)]


def test_everything_fits_below_threshold() -> None:
    fit = fit_creates(_creates("t", 3), [], [TableCapacity("t", 2, 50, **AWS_CAP)])
    assert len(fit.fits) == 3 and fit.refused == [] and fit.warnings == []


def test_refused_past_limit_with_both_ways_out() -> None:
    fit = fit_creates(_creates("t", 10), [], [TableCapacity("t", 45, 50, **AWS_CAP)])
    assert len(fit.fits) == 5 and len(fit.refused) == 5
    assert [a.node for a in fit.refused] == ["n5", "n6", "n7", "n8", "n9"]
    (w,) = fit.warnings
    assert w.kind == "reached" and w.used == 50 and w.limit == 50 and w.refused == 5 and w.needed == 55
    assert "vpc/L-93826ACB" in w.message and "to at least 55" in w.message and "1,000" in w.message
    assert "overlay" in w.message and "VXLAN" in w.message


def test_deletes_free_slots_first() -> None:
    deletes = [RouteAction("delete", "t", "10.244.99.0/24", "x", None)] * 2
    fit = fit_creates(_creates("t", 2), deletes, [TableCapacity("t", 50, 50, **AWS_CAP)])
    assert len(fit.fits) == 2 and fit.refused == []
    assert [w.kind for w in fit.warnings] == ["reached"]  # ends full: the next node will not fit


def test_nearing_warning_at_threshold_per_table() -> None:
    caps = [TableCapacity("a", 39, 50, **AWS_CAP), TableCapacity("b", 10, 50, **AWS_CAP)]
    fit = fit_creates(_creates("a", 1) + _creates("b", 1), [], caps, warn_percent=80)
    assert [(w.kind, w.table, w.used) for w in fit.warnings] == [("nearing", "a", 40)]
    assert "overlay" in fit.warnings[0].message and "L-93826ACB" in fit.warnings[0].message


def test_unknown_table_admits_and_bad_percent_rejected() -> None:
    assert len(fit_creates(_creates("t", 3), [], []).fits) == 3
    with pytest.raises(ValueError, match="warn_percent"):
        fit_creates([], [], [], warn_percent=0)


def test_gce_message_names_routes_quota() -> None:
    cap = TableCapacity("default", 250, 250, "the Compute Engine 'ROUTES' quota of project p",
                        "request it under IAM & Admin > Quotas for the Compute Engine API", "gce")
    (w,) = fit_creates(_creates("default", 1), [], [cap]).warnings
    assert "'ROUTES' quota of project p to at least 251" in w.message and "overlay" in w.message
