"""Fixtures for the operator tests: whole simulated clusters (API emulator + fake cloud + real controller)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from routectl.sim.aws import MUTATING_PREFIXES
from routectl.sim.cluster import SimCluster

GCE_MUTATING = {"compute.routes.insert", "compute.routes.delete"}


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimCluster]]:
    """Start SimClusters on demand; every one is stopped after the test."""
    started: list[SimCluster] = []

    def make(**kw: Any) -> SimCluster:
        sim = SimCluster(**kw)
        started.append(sim)
        return sim.start()

    yield make
    for sim in started:
        sim.stop()


def mutating_cloud_calls(sim: SimCluster) -> int:
    """Mutating calls the fake cloud has served since its log was last reset."""
    if sim.cloud == "aws":
        with sim.aws._lock:
            log = list(sim.aws.call_log)
        return sum(1 for a in log if a.split(":", 1)[-1].startswith(MUTATING_PREFIXES))
    with sim.gce._lock:
        log = list(sim.gce.call_log)
    return sum(1 for _, perm in log if perm in GCE_MUTATING)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Poll until `predicate()` is truthy; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    value = predicate()
    assert value, f"condition not met within {timeout}s: {getattr(predicate, '__name__', predicate)}"
    return value


def node_events(sim: SimCluster, name: str) -> list[dict[str, Any]]:
    """Events whose involved object is Node `name`."""
    return [e for e in sim.kube.list("v1", "Event")
            if e.get("involvedObject", {}).get("kind") == "Node" and e["involvedObject"].get("name") == name]


def pool_events(sim: SimCluster, name: str) -> list[dict[str, Any]]:
    """Events whose involved object is PodCIDRPool `name`."""
    return [e for e in sim.kube.list("v1", "Event")
            if e.get("involvedObject", {}).get("kind") == "PodCIDRPool"
            and e["involvedObject"].get("name") == name]


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    """One condition of an object's status (empty dict when absent)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}
