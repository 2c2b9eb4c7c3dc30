"""The emulator's request log: one record per HTTP request, thread-safe, bounded, with filters and counters.

Tests assert with it ("no Node writes after the restart", "one patch per node"); the HTTP layer
(:mod:`routectl.sim.kube_http`) adds to it when a request arrives and sets the status when answered.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass
class RequestRecord:
    """One HTTP request as the emulator understood it (for assertions such as "no Node writes").

    Logged when the request arrives; ``status`` is 0 until the answer is known (a live watch stays 0).
    """

    method: str
    path: str
    verb: str  # get/list/watch/create/update/patch/delete/deletecollection/discovery/other
    group: str | None
    version: str | None
    resource: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    user_agent: str
    content_type: str
    time: float
    query: dict[str, str] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        """Whether the verb changes state (create/update/patch/delete/deletecollection)."""
        return self.verb in WRITE_VERBS


class RequestLog:
    """Thread-safe, bounded log of requests with counters; read it from any thread."""

    def __init__(self, maxlen: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._maxlen = maxlen
        self._dropped = 0

    def add(self, record: RequestRecord) -> None:
        """Append a record, dropping the older half when the log is full."""
        with self._lock:
            self._records.append(record)
            if len(self._records) > self._maxlen:
                drop = len(self._records) - self._maxlen // 2
                del self._records[:drop]
                self._dropped += drop

    def mark(self) -> int:
        """A position to pass to :meth:`select` as ``since`` (e.g. taken right before a restart)."""
        with self._lock:
            return self._dropped + len(self._records)

    def clear(self) -> None:
        """Forget every record (marks taken before stay valid)."""
        with self._lock:
            self._dropped += len(self._records)
            self._records.clear()

    def select(self, *, verb: str | None = None, resource: str | None = None, subresource: str | None = "*",
               name: str | None = None, namespace: str | None = None, writes: bool = False,
               since: int = 0, user_agent: str | None = None) -> list[RequestRecord]:
        """Records matching every given filter; ``subresource="*"`` means any, ``None`` the main resource."""
        with self._lock:
            start = max(0, since - self._dropped)
            records = self._records[start:]
        return [r for r in records
                if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
                and (subresource == "*" or r.subresource == subresource)
                and (name is None or r.name == name) and (namespace is None or r.namespace == namespace)
                and (not writes or r.is_write)
                and (user_agent is None or user_agent.lower() in r.user_agent.lower())]

    def count(self, **filters: Any) -> int:
        """How many records match (same filters as :meth:`select`)."""
        return len(self.select(**filters))

    def counters(self, since: int = 0) -> Counter[tuple[str, str | None, str | None]]:
        """Counts per (verb, resource, subresource)."""
        return Counter((r.verb, r.resource, r.subresource) for r in self.select(since=since))

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        with self._lock:
            return iter(list(self._records))

