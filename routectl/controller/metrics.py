"""Prometheus metrics of the controller, on a registry of its own (several controllers can share a process).

Pool and route figures are set after each reconcile; cloud call counts are read from the driver's
thread-safe CallCounter at scrape time, so they are never out of step with the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from routectl.routes.model import CallStats


class _CloudCallCollector(Collector):
    """Exposes the driver's call counters (by operation, throttled, errors) as Prometheus counters."""

    def __init__(self, source: Callable[[], CallStats | None]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        stats = self._source()
        calls = CounterMetricFamily("routectl_cloud_calls", "Cloud API calls by operation.",
                                    labels=["operation"])
        errors = CounterMetricFamily("routectl_cloud_call_errors", "Cloud API calls that answered an error.")
        throttled = CounterMetricFamily("routectl_cloud_throttled_calls",
                                        "Cloud calls answered with throttling (429, RequestLimitExceeded).")
        if stats is not None:
            for op, count in sorted(stats.calls.items()):
                calls.add_metric([op], count)
            errors.add_metric([], stats.errors)
            throttled.add_metric([], stats.throttled)
        yield calls
        yield errors
        yield throttled


class Metrics:
    """All controller metrics; `render()` gives the text exposition for /metrics."""

    def __init__(self, cloud_stats: Callable[[], CallStats | None] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.allocations = Counter("routectl_allocations", "Pod CIDR blocks handed to nodes.", ["pool"],
                                   registry=r)
        self.releases = Counter("routectl_releases", "Pod CIDR blocks released after node deletion.",
                                ["pool"], registry=r)
        self.pool_allocated = Gauge("routectl_pool_allocated_blocks", "Blocks in use per pool.", ["pool"],
                                    registry=r)
        self.pool_free = Gauge("routectl_pool_free_blocks", "Free blocks per pool.", ["pool"], registry=r)
        self.pool_capacity = Gauge("routectl_pool_capacity_blocks", "Blocks per pool in all.", ["pool"],
                                   registry=r)
        self.routes_desired = Gauge("routectl_routes_desired", "Routes the cluster's nodes need.", registry=r)
        self.routes_actual = Gauge("routectl_routes_actual", "Routes programmed for nodes.", registry=r)
        self.table_used = Gauge("routectl_route_table_used", "Routes in a table (or project quota).",
                                ["table"], registry=r)
        self.table_limit = Gauge("routectl_route_table_limit", "Route limit of a table (or project quota).",
                                 ["table"], registry=r)
        self.table_headroom = Gauge("routectl_route_table_headroom", "Routes that still fit in a table.",
                                    ["table"], registry=r)
        self.reconcile = Histogram("routectl_reconcile_duration_seconds", "Duration of reconcile passes.",
                                   ["kind"], registry=r,
                                   buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.route_ops = Counter("routectl_route_operations", "Route changes by operation and result "
                                 "(ok, error, refused for the route limit).", ["operation", "result"],
                                 registry=r)
        self.leader = Gauge("routectl_leader", "1 while this controller holds the leader lease.", registry=r)
        self.events_dropped = Counter("routectl_events_dropped", "Events not posted: the bounded Event "
                                      "queue was full (Events are shed first under load).", registry=r)
        self.node_writes = Counter("routectl_node_writes", "Writes to Node objects by kind.", ["kind"],
                                   registry=r)
        r.register(_CloudCallCollector(cloud_stats))

    def set_table(self, table: str, used: int, limit: int) -> None:
        """Record one route table's fill."""
        self.table_used.labels(table).set(used)
        self.table_limit.labels(table).set(limit)
        self.table_headroom.labels(table).set(max(0, limit - used))

    def set_pool(self, pool: str, allocated: int, free: int, capacity: int) -> None:
        """Record one pool's block counts."""
        self.pool_allocated.labels(pool).set(allocated)
        self.pool_free.labels(pool).set(free)
        self.pool_capacity.labels(pool).set(capacity)

    def count_route_ops(self, result: object) -> None:
        """Count a route reconciler result's actions: done (ok), failed (error), refused (limit)."""
        for a in getattr(result, "actions", ()):
            self.route_ops.labels(a.kind, "ok").inc()
        for a, _ in getattr(result, "failed", ()):
            self.route_ops.labels(a.kind, "error").inc()
        for a in getattr(result, "refused", ()):
            self.route_ops.labels(a.kind, "refused").inc()

    def render(self) -> bytes:
        """Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
