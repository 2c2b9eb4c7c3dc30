"""How both route drivers call their cloud API: one place for the client-side token bucket (mutating calls
only), bounded concurrency, call/throttle/error counting and the shared retry policy (routectl.cloud.retry).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from routectl.cloud.base import CallCounter, CloudError
from routectl.cloud.ratelimit import TokenBucket
from routectl.cloud.retry import call_with_retry

T = TypeVar("T")


class FencedError(CloudError):
    """A mutating cloud call was refused before it was sent: this replica is not the leader any more."""


class CloudCaller:
    """Calls `fn` under the policy: a token per mutating attempt, at most `concurrency` in flight, every
    attempt counted, SDK errors (`errors`) counted, retryable ones retried; a throttled answer drains the
    bucket (our idea of the server's budget was too optimistic)."""

    def __init__(self, calls: CallCounter, bucket: TokenBucket, concurrency: int,
                 errors: tuple[type[BaseException], ...], *, attempts: int = 8, initial: float = 0.05,
                 maximum: float = 5.0) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.calls = calls
        self.bucket = bucket
        self.errors = errors
        self.attempts = attempts
        self.initial = initial
        self.maximum = maximum
        self._sem = threading.BoundedSemaphore(concurrency)
        # True once leadership is lost: checked immediately before every mutating attempt (also retries),
        # so a sync already running in its thread stops changing the cloud at its next call.
        self.fence: Callable[[], bool] | None = None

    def __call__(self, op: str, fn: Callable[[], T], *, mutating: bool = False) -> T:
        """Run `fn` (one cloud call named `op`, e.g. "ec2:CreateRoute") with retries; returns its result."""
        def attempt() -> T:
            if mutating:
                self.bucket.acquire()  # may wait: the fence is checked after it
                if self.fence is not None and self.fence():
                    raise FencedError(f"{op} refused: not the leader any more")
            self.calls.record(op)
            with self._sem:
                try:
                    return fn()
                except self.errors:
                    self.calls.error()
                    raise

        def on_retryable(kind: str, exc: BaseException) -> None:
            if kind == "throttled":
                self.calls.throttled()
                self.bucket.drain()

        return call_with_retry(attempt, attempts=self.attempts, initial=self.initial, maximum=self.maximum,
                               on_retryable=on_retryable)


class UsesCloudCaller:
    """Mixin for drivers: `bucket` and `_call` delegate to the driver's `caller`."""

    caller: CloudCaller

    @property
    def bucket(self) -> TokenBucket:
        """The client-side token bucket for mutating calls (replaceable, e.g. by benchmarks)."""
        return self.caller.bucket

    @bucket.setter
    def bucket(self, value: TokenBucket) -> None:
        self.caller.bucket = value

    def _call(self, op: str, fn: Callable[[], T], *, mutating: bool = False) -> T:
        return self.caller(op, fn, mutating=mutating)


def concurrency_advice(latency: float, concurrency: int, rate: float) -> str | None:
    """What to do when operations holding a slot for `latency` s each, `concurrency` at a time, make fewer
    routes per second than the cloud `rate` allows (None when they do not)."""
    if latency <= 0 or concurrency / latency >= rate:
        return None
    return (f"cloud route operations take {latency:.1f}s each: {concurrency} in flight make at most "
            f"{concurrency / latency:.1f} routes/s, below the cloud rate of {rate:g}/s; raise --concurrency "
            f"(ROUTECTL_CONCURRENCY) to {math.ceil(rate * latency)}")


class LatencyWatch:
    """A moving average of how long one route operation holds its slot, and the advice of
    `concurrency_advice` at most once per `every` seconds, once `least` operations were seen (the first
    ones pay for connections and imports) (thread-safe)."""

    def __init__(self, concurrency: int, rate: float, *, every: float = 600.0, weight: float = 0.1,
                 least: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        self.concurrency, self.rate, self.every = concurrency, rate, every
        self.weight, self.least, self.clock = weight, least, clock
        self.average: float | None = None
        self.seen = 0
        self._said: float | None = None
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> str | None:
        """Record one operation's time; the advice when it is due (else None)."""
        with self._lock:
            avg = seconds if self.average is None else self.average + self.weight * (seconds - self.average)
            self.average, self.seen = avg, self.seen + 1
            advice = concurrency_advice(avg, self.concurrency, self.rate)
            now = self.clock()
            if advice is None or self.seen < self.least or (
                    self._said is not None and now - self._said < self.every):
                return None
            self._said = now
            return advice
