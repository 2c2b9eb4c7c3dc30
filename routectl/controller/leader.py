"""Lease-based leader election (coordination.k8s.io/v1), so at most one controller allocates and routes.

Semantics follow client-go's leaderelection:
- a candidate takes the Lease when it is absent, released (empty holder) or expired; every write carries
  a JSON-patch `test` of metadata.resourceVersion, so of two racing candidates exactly one wins;
- "expired" means the record (holder, renewTime, ...) has not changed for leaseDurationSeconds as timed by
  this candidate's own monotonic clock since it last saw it change (client-go's rule). The holder's
  renewTime is never compared with our wall clock: a skewed clock must not let a standby take over early
  (a restarted controller therefore waits one lease duration, unless the Lease was released);
- the leader renews every retry period and gives up leadership when it could not renew for the renew
  deadline, which is shorter than the lease duration: it stops acting before anyone else may start;
- on a clean shutdown the leader releases the Lease (empty holder) so a successor starts at once.
The controller runs its kopf operator only while it leads; losing the Lease stops it (the process exits
and is restarted, as with kube-controller-manager).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from routectl.controller.kube import JSON_PATCH, ApiError, KubeClient, now_micro

log = logging.getLogger(__name__)

ACQUIRED, HELD_BY_OTHER, FAILED = "acquired", "held-by-other", "failed"


def _test_rv(obj: dict[str, Any]) -> dict[str, Any]:
    """JSON-patch op that makes the write fail unless the object is unchanged since we read it."""
    return {"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]}


class LeaderElector:
    """Acquire, renew and release one Lease for `identity`."""

    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.is_leader = False
        self.transitions = 0
        self._observed: tuple[str, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0

    @property
    def path(self) -> str:
        """API path of the Lease."""
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def _set_leader(self, value: bool) -> None:
        if value != self.is_leader:
            self.is_leader = value
            log.info("leader election: %s %s lease %s/%s", self.identity,
                     "acquired" if value else "lost", self.namespace, self.name)
            if self.on_change is not None:
                self.on_change(value)

    def _spec(self, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": now_micro(),
            "leaseTransitions": transitions,
        }

    def _expired(self, spec: dict[str, Any]) -> bool:
        holder = spec.get("holderIdentity") or ""
        if not holder:
            return True
        record = (holder, str(spec.get("renewTime")), str(spec.get("acquireTime")),
                  str(spec.get("leaseTransitions")), str(spec.get("leaseDurationSeconds")))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        return now - self._observed_at >= duration

    async def try_acquire_or_renew(self) -> str:
        """One attempt: ACQUIRED (we hold it now), HELD_BY_OTHER, or FAILED (API error, lost race)."""
        try:
            lease = await self.client.get(self.path)
        except ApiError as exc:
            if exc.status != 404:
                log.warning("leader election: reading the lease failed: %s", exc)
                return FAILED
            body = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now_micro(), 0),
            }
            try:
                await self.client.request(
                    "POST", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body)
            except ApiError as exc2:
                return HELD_BY_OTHER if exc2.status == 409 else FAILED
            return ACQUIRED
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder != self.identity and not self._expired(spec):
            return HELD_BY_OTHER
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquire_time = spec.get("acquireTime") or now_micro()
        else:
            acquire_time, transitions = now_micro(), transitions + 1
        patch = [
            _test_rv(lease),
            {"op": "add", "path": "/spec", "value": self._spec(acquire_time, transitions)},
        ]
        try:
            await self.client.request("PATCH", self.path, patch, content_type=JSON_PATCH)
        except ApiError as exc:
            if exc.conflict:
                return HELD_BY_OTHER
            log.warning("leader election: writing the lease failed: %s", exc)
            return FAILED
        return ACQUIRED

    async def acquire(self) -> None:
        """Block until this candidate holds the Lease."""
        while True:
            if await self.try_acquire_or_renew() == ACQUIRED:
                self._last_renew = time.monotonic()
                self._set_leader(True)
                return
            await asyncio.sleep(self.retry_period)

    async def hold(self) -> None:
        """Renew every retry period; return (leadership lost) when the renew deadline passes unrenewed.

        Each renew attempt is cut off at the renew deadline (the API client's own timeout and retries are
        far longer than a lease): a hung renew must not keep this replica acting after a standby may
        have taken over."""
        while True:
            await asyncio.sleep(self.retry_period)
            remaining = self.renew_deadline - (time.monotonic() - self._last_renew)
            try:
                result = await asyncio.wait_for(self.try_acquire_or_renew(), timeout=max(0.0, remaining))
            except TimeoutError:
                log.warning("leader election: renewing the lease did not finish within the renew deadline")
                result = FAILED
            now = time.monotonic()
            if result == ACQUIRED and now - self._last_renew < self.renew_deadline:
                self._last_renew = now
            elif result == HELD_BY_OTHER or now - self._last_renew >= self.renew_deadline:
                self._set_leader(False)
                return

    async def release(self) -> None:
        """Give the Lease up if we hold it (clean shutdown), so a successor need not wait for expiry."""
        if not self.is_leader:
            return
        self.is_leader = False
        log.info("leader election: %s releases lease %s/%s", self.identity, self.namespace, self.name)
        if self.on_change is not None:
            self.on_change(False)
        try:
            lease = await self.client.get(self.path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            patch = [
                _test_rv(lease),
                {"op": "add", "path": "/spec/holderIdentity", "value": ""},
                {"op": "add", "path": "/spec/leaseDurationSeconds", "value": 1},
            ]
            await self.client.request("PATCH", self.path, patch, content_type=JSON_PATCH)
        except ApiError as exc:
            log.info("leader election: release failed (the lease will expire): %s", exc)
