"""Injected faults for the fake clouds: count-based (deterministic) or random (seeded), shared by both fakes.

Count-based faults make tests independent of wall-clock speed: every `throttle_every`-th mutating request
is answered "throttled" and every `error_every`-th request a 5xx, whatever the CPU load. A request whose
previous attempt was faulted is never faulted again in a row (a retry of the same request goes through;
the due fault moves to the next request), so one call needs at most two attempts per fault kind. Half
of the injected errors on mutating requests (every other one when counted) are "applied then failed":
the change is made and only the answer is lost, so the client's retry meets its own route (409
alreadyExists / RouteAlreadyExists), as happens with real clouds.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

THROTTLE = "throttle"
ERROR = "error"
ERROR_AFTER_APPLY = "error-after-apply"


@dataclass
class FaultPlan:
    """Decides, per request, whether to inject a fault; counts what it injected (thread-safe)."""

    throttle_every: int = 0
    error_every: int = 0
    error_rate: float = 0.0
    seed: int | None = None
    throttled: int = 0
    errors: int = 0
    applied_then_failed: int = 0
    _requests: int = 0
    _mutating: int = 0
    _due_throttle: int = 0
    _due_error: int = 0
    _mutating_errors: int = 0
    _faulted: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if self.throttle_every < 0 or self.error_every < 0 or not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("throttle_every/error_every must be >= 0 and error_rate in 0..1")
        self._rng = random.Random(self.seed)

    def decide(self, key: str, mutating: bool) -> str | None:
        """THROTTLE, ERROR, ERROR_AFTER_APPLY or None for one request identified by `key` (same on retry)."""
        with self._lock:
            self._requests += 1
            if mutating:
                self._mutating += 1
                if self.throttle_every and self._mutating % self.throttle_every == 0:
                    self._due_throttle += 1
            if self.error_every and self._requests % self.error_every == 0:
                self._due_error += 1
            if key in self._faulted:  # its previous attempt was faulted: let this one through
                self._faulted.discard(key)
                return None
            kind: str | None = None
            if mutating and self._due_throttle:
                self._due_throttle -= 1
                self.throttled += 1
                kind = THROTTLE
            elif self._due_error or (self.error_rate and self._rng.random() < self.error_rate):
                self._due_error = max(0, self._due_error - 1)
                self.errors += 1
                kind = ERROR
                if mutating:
                    self._mutating_errors += 1
                    after = (self._mutating_errors % 2 == 1) if self.error_every else self._rng.random() < 0.5
                    if after:
                        self.applied_then_failed += 1
                        kind = ERROR_AFTER_APPLY
            if kind is not None:
                self._faulted.add(key)
            return kind

    def reset_counts(self) -> None:
        """Zero the injected-fault counters (the schedule keeps going)."""
        with self._lock:
            self.throttled = self.errors = self.applied_then_failed = 0


class InjectsFaults:
    """Mixin for a fake cloud holding a FaultPlan: `error_rate` stays a plain settable attribute."""

    faults: FaultPlan

    @property
    def error_rate(self) -> float:
        """Random share of requests answered with an injected error."""
        return self.faults.error_rate

    @error_rate.setter
    def error_rate(self, value: float) -> None:
        self.faults.error_rate = value
