"""The fake clouds' fault schedule (pure): counted faults land exactly, never twice in a row per request."""

from __future__ import annotations

import pytest

from routectl.sim.faults import ERROR, ERROR_AFTER_APPLY, THROTTLE, FaultPlan


def test_counted_faults_are_exact_and_spare_the_retry() -> None:
    plan = FaultPlan(throttle_every=3, error_every=4)
    got = [plan.decide(f"req-{i}", mutating=True) for i in range(12)]
    # mutating #3, #6, #9, #12 throttled; requests #4, #8, #12 due an error (#12's moves on: it is throttled)
    assert [i + 1 for i, k in enumerate(got) if k == THROTTLE] == [3, 6, 9, 12]
    assert [i + 1 for i, k in enumerate(got) if k in (ERROR, ERROR_AFTER_APPLY)] == [4, 8]
    assert [k for k in got if k in (ERROR, ERROR_AFTER_APPLY)] == [ERROR_AFTER_APPLY, ERROR]
    assert plan.decide("req-11", mutating=True) is None  # retry of a faulted request goes through ...
    assert plan.decide("next", mutating=False) == ERROR  # ... and the due error lands on the next one
    assert (plan.throttled, plan.errors, plan.applied_then_failed) == (4, 3, 1)


def test_every_request_faulted_still_means_at_most_two_attempts() -> None:
    plan = FaultPlan(error_every=1)
    for i in range(20):
        assert plan.decide(f"r{i}", mutating=False) == ERROR
        assert plan.decide(f"r{i}", mutating=False) is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        FaultPlan(error_rate=1.5)
