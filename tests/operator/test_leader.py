"""Lease-based leader election against the Kubernetes API emulator over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import pytest

from routectl.controller.kube import KubeClient
from routectl.controller.leader import ACQUIRED, HELD_BY_OTHER, LeaderElector
from routectl.sim.kube import KubeServer


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeServer]:
    with KubeServer() as server:
        yield server


def _stamp(value: str) -> float:
    """An RFC 3339 MicroTime of the Lease as epoch seconds."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _elector(client: KubeClient, identity: str, name: str, duration: float = 1.5) -> LeaderElector:
    return LeaderElector(client, "default", name, identity, lease_duration=duration,
                         renew_deadline=duration * 0.7, retry_period=0.2)


async def test_exactly_one_of_two_candidates_acquires(kube: KubeServer) -> None:
    client = KubeClient(kube.url)
    try:
        a, b = _elector(client, "a", "race"), _elector(client, "b", "race")
        results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
        assert sorted(results) == sorted([ACQUIRED, HELD_BY_OTHER])
        lease = kube.get("coordination.k8s.io/v1", "Lease", "race", "default")
        winner = "a" if results[0] == ACQUIRED else "b"
        assert lease["spec"]["holderIdentity"] == winner
        # the holder renews; the other still cannot take it
        loser = b if winner == "a" else a
        holder = a if winner == "a" else b
        assert await holder.try_acquire_or_renew() == ACQUIRED
        assert await loser.try_acquire_or_renew() == HELD_BY_OTHER
    finally:
        await client.close()


async def test_successor_takes_over_after_expiry_and_release(kube: KubeServer) -> None:
    client = KubeClient(kube.url)
    try:
        first, second = _elector(client, "first", "takeover"), _elector(client, "second", "takeover")
        await first.acquire()
        assert first.is_leader
        last_renew = kube.get("coordination.k8s.io/v1", "Lease", "takeover", "default")["spec"]["renewTime"]
        # "first" dies silently (no renewals): "second" must get the lease once it expired, not before.
        waiter = asyncio.create_task(second.acquire())
        await asyncio.sleep(0.5)
        assert not waiter.done()
        await asyncio.wait_for(waiter, timeout=5)
        assert second.is_leader
        lease = kube.get("coordination.k8s.io/v1", "Lease", "takeover", "default")
        assert lease["spec"]["holderIdentity"] == "second"
        # taken over only once the holder's last renewal was a whole lease duration old
        age = _stamp(lease["spec"]["acquireTime"]) - _stamp(last_renew)
        assert age >= lease["spec"]["leaseDurationSeconds"]
        assert lease["spec"]["leaseTransitions"] == 1
        # the old leader, renewing now, learns it lost
        holding = asyncio.create_task(first.hold())
        await asyncio.wait_for(holding, timeout=5)
        assert not first.is_leader
        # a clean release hands over at once
        await second.release()
        third = _elector(client, "third", "takeover", duration=30)
        assert await third.try_acquire_or_renew() == ACQUIRED
    finally:
        await client.close()


async def test_leader_keeps_lease_while_renewing(kube: KubeServer) -> None:
    client = KubeClient(kube.url)
    try:
        leader, other = _elector(client, "l", "steady"), _elector(client, "o", "steady")
        await leader.acquire()
        holding = asyncio.create_task(leader.hold())
        for _ in range(10):
            await asyncio.sleep(0.3)
            assert await other.try_acquire_or_renew() == HELD_BY_OTHER
        assert leader.is_leader and not holding.done()
        holding.cancel()
    finally:
        await client.close()


async def test_clock_skew_never_lets_a_standby_take_over_early(kube: KubeServer) -> None:
    """The holder's clock is an hour behind (its renewTime looks ancient): expiry is judged on the standby's
    own monotonic clock from when it saw the record change, as client-go does."""
    client = KubeClient(kube.url)
    try:
        old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        kube.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": "skew", "namespace": "default"},
                     "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 1, "renewTime": old,
                              "acquireTime": old, "leaseTransitions": 0}}, "default")
        standby = _elector(client, "standby", "skew", duration=1.0)
        assert await standby.try_acquire_or_renew() == HELD_BY_OTHER
        for i in range(4):  # the skewed holder keeps renewing (its record changes), with its old clock
            await asyncio.sleep(0.4)
            stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1, seconds=-i)).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
            kube.patch("coordination.k8s.io/v1", "Lease", "skew", {"spec": {"renewTime": stamp}}, "default")
            assert await standby.try_acquire_or_renew() == HELD_BY_OTHER
        await asyncio.sleep(1.2)  # now it stops renewing: a whole lease duration by our clock
        assert await standby.try_acquire_or_renew() == ACQUIRED
    finally:
        await client.close()
