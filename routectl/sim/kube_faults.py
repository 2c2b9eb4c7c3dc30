"""Injected failures of the Kubernetes API emulator: matching requests answered with an error Status.

Thread-safe: tests add faults from their thread while the emulator checks them on its loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from routectl.sim.kube_route import Route


@dataclass
class Fault:
    """An injected failure: matching requests are answered ``code`` (``times`` times, or always if None),
    after ``delay`` seconds (a hung API call); ``user_agent`` limits it to clients whose agent contains it."""

    verb: str | None = None
    resource: str | None = None
    subresource: str | None = "*"
    name: str | None = None
    namespace: str | None = None
    code: int = 500
    reason: str = "InternalError"
    message: str = "injected fault"
    times: int | None = 1
    retry_after: int | None = None
    hits: int = 0
    user_agent: str | None = None
    delay: float = 0.0

    def matches(self, verb: str, route: Route, user_agent: str = "") -> bool:
        """Whether a request with this verb, route (and User-Agent) is targeted by the fault."""
        return ((self.verb is None or self.verb == verb)
                and (self.user_agent is None or self.user_agent.lower() in user_agent.lower())
                and (self.resource is None or self.resource == route.plural)
                and (self.subresource == "*" or self.subresource == route.subresource)
                and (self.name is None or self.name == route.name)
                and (self.namespace is None or self.namespace == route.namespace))



class Faults:
    """The live list of injected faults (the first live match wins and counts a hit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Start injecting ``fault``."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def check(self, verb: str, route: Route, user_agent: str = "") -> Fault | None:
        """The fault that answers this request, if any (its ``hits`` counted)."""
        with self._lock:
            for fault in self._faults:
                live = fault.times is None or fault.hits < fault.times
                if live and fault.matches(verb, route, user_agent):
                    fault.hits += 1
                    return fault
        return None
