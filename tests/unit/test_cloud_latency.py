"""When cloud operations, not the rate, bound how fast routes are made: the advice and when it is given."""

from __future__ import annotations

from routectl.cloud.caller import LatencyWatch, concurrency_advice
from routectl.controller.config import load_config


def test_advice_only_when_operations_in_flight_cannot_keep_up_with_the_rate() -> None:
    assert concurrency_advice(0.5, 20, 20.0) is None  # 40 routes/s possible
    assert concurrency_advice(1.0, 20, 20.0) is None  # exactly the rate
    advice = concurrency_advice(2.0, 20, 20.0)
    assert advice is not None
    assert "take 2.0s each" in advice and "at most 10.0 routes/s" in advice
    assert advice.endswith("raise --concurrency (ROUTECTL_CONCURRENCY) to 40")
    assert concurrency_advice(0.0, 1, 20.0) is None


def test_the_watch_waits_for_enough_operations_then_speaks_once_per_period() -> None:
    now = [0.0]
    watch = LatencyWatch(10, 20.0, every=600.0, least=5, clock=lambda: now[0])
    said = [watch.observe(2.0) for _ in range(5)]
    assert said[:4] == [None] * 4 and said[4] is not None  # the fifth operation: 10 / 2 s < 20/s
    assert watch.observe(2.0) is None  # not again within the period
    now[0] = 601.0
    assert watch.observe(2.0) is not None
    now[0] = 2000.0
    for _ in range(60):  # operations got fast: the average follows, and nothing is said
        fast = watch.observe(0.1)
    assert fast is None and watch.average is not None and watch.average < 0.5


def test_the_default_concurrency_keeps_gce_default_rate_with_operations_of_five_seconds() -> None:
    cfg = load_config({"gce_project": "p"}, {"ROUTECTL_PROVIDER": "gce"}, namespace_file="/nonexistent")
    assert concurrency_advice(5.0, cfg.concurrency, 20.0) is None
