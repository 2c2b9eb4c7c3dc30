"""The one small protocol every cloud route driver implements, plus shared errors and call counting.

Drivers are synchronous (the cloud SDKs are); the controller calls them through asyncio.to_thread.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Protocol, runtime_checkable

from routectl.routes.model import CallStats, CloudRoute, NodeRoutes, TableCapacity

__all__ = [
    "CallCounter",
    "CloudError",
    "NodeProblem",
    "RouteDriver",
    "RouteLimitError",
    "TableCapacity",
]

# Per-node problem reasons (NodeRouteStatus.reason / Node condition message).
REASON_INVALID_PROVIDER_ID = "InvalidProviderID"
REASON_INSTANCE_NOT_FOUND = "InstanceNotFound"
REASON_PREREQUISITE_FAILED = "PrerequisiteFailed"
REASON_ROUTE_LIMIT = "RouteLimitReached"
REASON_CLOUD_ERROR = "CloudError"
REASON_NO_POD_CIDR = "NoPodCIDR"


class NodeProblem(Exception):
    """A per-node reason why its routes cannot be programmed (bad providerID, missing instance...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class CloudError(Exception):
    """A cloud call failed for good (after retries, or a non-retryable error)."""


class RouteLimitError(CloudError):
    """The cloud refused a route because the table/network route limit is reached.

    `family` says which count is full (None: the one count of both families, GCE); `limit` is the count
    at which the cloud refused, when the driver could read it (a limit learned from the cloud).
    """

    def __init__(self, message: str, *, family: str | None = None, limit: int | None = None) -> None:
        super().__init__(message)
        self.family = family
        self.limit = limit


class CallCounter:
    """Thread-safe count of cloud calls by operation name, throttled answers and errors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._throttled = 0
        self._errors = 0

    def record(self, op: str) -> None:
        """Count one call of `op` (e.g. "routes.insert", "ec2:CreateRoute")."""
        with self._lock:
            self._calls[op] += 1

    def throttled(self) -> None:
        """Count one throttled answer (429 / RequestLimitExceeded)."""
        with self._lock:
            self._throttled += 1

    def error(self) -> None:
        """Count one failed call (any error answer)."""
        with self._lock:
            self._errors += 1

    def snapshot(self) -> CallStats:
        """A copy of the counters."""
        with self._lock:
            return CallStats(dict(self._calls), self._throttled, self._errors)

    def reset(self) -> None:
        """Zero all counters (benchmarks measure phases separately)."""
        with self._lock:
            self._calls.clear()
            self._throttled = 0
            self._errors = 0


@runtime_checkable
class RouteDriver(Protocol):
    """The cluster's route tables in one cloud: list, create, replace, delete, capacity, resolve."""

    provider: str
    calls: CallCounter

    def list_tables(self) -> list[str]:
        """IDs/names of the route tables this cluster programs (every node route goes to each)."""
        ...

    def list_routes(self) -> list[CloudRoute]:
        """Every route in our tables (owned flag set), one paginated list per table."""
        ...

    def resolve(self, node: NodeRoutes, *, check_only: bool = False) -> str:
        """The node's next-hop target; checks (and unless check_only, fixes) prerequisites.

        Raises NodeProblem for per-node issues, CloudError when the cloud cannot answer.
        """
        ...

    def create(self, table: str, destination: str, target: str, node: NodeRoutes) -> CloudRoute:
        """Create our route; idempotent (an identical existing route is success, a different one replaced)."""
        ...

    def replace(self, route: CloudRoute, target: str, node: NodeRoutes) -> CloudRoute:
        """Point an owned route at a new target (or repair a blackhole)."""
        ...

    def delete(self, route: CloudRoute) -> None:
        """Delete an owned route; a route already gone is success. Refuses routes not owned."""
        ...

    def capacity(self, routes: list[CloudRoute]) -> list[TableCapacity]:
        """Used and limit per table (AWS: per route table and IP family; GCE: the network's static-route
        quota or the project's ROUTES quota, whichever binds)."""
        ...
