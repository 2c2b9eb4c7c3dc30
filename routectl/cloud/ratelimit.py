"""Client-side token bucket for mutating cloud calls, so a large scale-up does not become a throttling storm.

Same model as EC2's API throttling (bucket of `burst` tokens refilled at `rate` per second); k8s #20984
and #38618 show what happens without one.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """Thread-safe token bucket: `acquire()` blocks until a token is available."""

    def __init__(self, rate: float, burst: int, *, clock=time.monotonic, sleep=time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> bool:
        """Take a token if one is available now."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def acquire(self) -> float:
        """Block until a token is taken; returns seconds waited. Waiters reserve tokens in arrival order."""
        with self._lock:
            self._refill()
            self._tokens -= 1  # reserve (may go negative: later callers queue behind)
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait

    def drain(self) -> None:
        """Empty the bucket (a server answered "throttled": our view was too optimistic)."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)
