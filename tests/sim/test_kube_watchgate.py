"""Holding back, delaying and reordering watch events per object (KubeServer.hold_watch / delay_watch),
observed by a real HTTP watch stream."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from routectl.sim.kube import KubeServer
from routectl.sim.kube_store import Store

Event = tuple[str, str, int, str]  # (type, name, resourceVersion, spec.podCIDR or "")


class Watcher:
    """A watch on /api/v1/nodes over HTTP in a thread, recording every event it receives."""

    def __init__(self, kube: KubeServer, resource_version: str = "") -> None:
        query = "watch=true&timeoutSeconds=30" + (f"&resourceVersion={resource_version}" if resource_version
                                                  else "")
        self._conn = http.client.HTTPConnection("127.0.0.1", kube.port, timeout=30)
        self._conn.request("GET", f"/api/v1/nodes?{query}")
        self._resp = self._conn.getresponse()
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            self._read_lines()

    def _read_lines(self) -> None:
        for line in self._resp:
            event = json.loads(line)
            obj = event["object"]
            meta = obj["metadata"]
            with self._cond:
                self.events.append((event["type"], meta.get("name", ""), int(meta["resourceVersion"]),
                                    (obj.get("spec") or {}).get("podCIDR", "")))
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Event]], bool], what: str) -> list[Event]:
        """Block until ``predicate(events)`` holds (at most 20 s) and return a copy of the events."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.events), timeout=20):
                raise AssertionError(f"timed out waiting for {what}; saw {self.events}")
            return list(self.events)

    def names(self, kind: str = "MODIFIED") -> list[str]:
        with self._cond:
            return [name for t, name, _, _ in self.events if t == kind]

    def close(self) -> None:
        """Cut the connection (a shutdown wakes the reading thread at once) and wait for the reader."""
        if self._conn.sock is not None:
            with contextlib.suppress(OSError):
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._conn.close()


@pytest.fixture
def watcher(kube: KubeServer) -> Iterator[Callable[..., Watcher]]:
    opened: list[Watcher] = []

    def open_watch(resource_version: str = "") -> Watcher:
        w = Watcher(kube, resource_version)
        opened.append(w)
        return w

    yield open_watch
    for w in opened:
        w.close()


def node(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}


def label(kube: KubeServer, name: str, value: str) -> None:
    kube.patch("v1", "Node", name, {"metadata": {"labels": {"step": value}}})


def test_held_events_are_not_delivered_until_release(kube: KubeServer,
                                                     watcher: Callable[..., Watcher]) -> None:
    for n in ("n1", "n2"):
        kube.create(node(n))
    w = watcher()
    w.wait_for(lambda ev: len(ev) == 2, "the initial ADDED events")
    hold = kube.hold_watch(resource="nodes", name="n1")
    kube.patch("v1", "Node", "n1", {"spec": {"podCIDR": "10.0.1.0/24"}})
    label(kube, "n1", "two")
    label(kube, "n2", "one")  # committed after n1's changes: one stream would have delivered them first
    w.wait_for(lambda ev: any(e[1] == "n2" and e[0] == "MODIFIED" for e in ev), "n2's change")
    assert w.names() == ["n2"]  # n1's two changes are held back ...
    assert kube.get("v1", "Node", "n1")["spec"]["podCIDR"] == "10.0.1.0/24"  # ... but committed
    assert hold.pending == 2

    late = watcher(resource_version=str(w.events[1][2]))  # a watch resuming from before the held changes
    late.wait_for(lambda ev: [e[1] for e in ev] == ["n2"], "the resumed watch to replay n2 only")

    assert hold.release() == 2
    for stream in (w, late):
        events = stream.wait_for(lambda ev: [e[1] for e in ev].count("n1") >= 2, "n1's released changes")
        n1 = [e for e in events if e[1] == "n1" and e[0] == "MODIFIED"]
        assert [e[2] for e in n1] == sorted(e[2] for e in n1)  # its own order kept
        assert n1[-1][3] == "10.0.1.0/24"
    assert hold.pending == 0 and hold.release() == 0  # idempotent


def _two_rounds(kube: KubeServer, names: list[str]) -> None:
    for step in ("a", "b"):
        for n in names:
            label(kube, n, step)


@pytest.mark.parametrize(("order", "keep", "expected"), [
    ("fifo", True, ["x1", "y1", "z1", "x2", "y2", "z2"]),
    ("reverse", True, ["z1", "y1", "x1", "z2", "y2", "x2"]),  # objects overtake; each keeps its order
    ("reverse", False, ["z2", "y2", "x2", "z1", "y1", "x1"]),  # stale snapshots after fresh ones
])
def test_release_reorders_across_objects(kube: KubeServer, watcher: Callable[..., Watcher], order: str,
                                         keep: bool, expected: list[str]) -> None:
    names = ["x", "y", "z"]
    for n in names:
        kube.create(node(n))
    w = watcher()
    w.wait_for(lambda ev: len(ev) == 3, "the initial ADDED events")
    hold = kube.hold_watch(resource="nodes")
    _two_rounds(kube, names)
    assert hold.pending == 6
    hold.release(order=order, keep_object_order=keep)  # type: ignore[arg-type]
    events = w.wait_for(lambda ev: len(ev) == 9, "the six released events")[3:]
    # Name each delivered event by its object and its rank among that object's changes (by rv).
    rank = {e[2]: 1 + sorted(x[2] for x in events if x[1] == e[1]).index(e[2]) for e in events}
    assert [f"{e[1]}{rank[e[2]]}" for e in events] == expected


def test_shuffled_release_is_reproducible_from_its_seed() -> None:
    def run(seed: int) -> list[str]:
        with KubeServer() as kube:
            names = [f"s{i}" for i in range(8)]
            for n in names:
                kube.create(node(n))
            w = Watcher(kube)
            try:
                w.wait_for(lambda ev: len(ev) == 8, "the initial ADDED events")
                hold = kube.hold_watch(resource="nodes")
                for n in names:
                    label(kube, n, "x")
                hold.release(order="shuffled", seed=seed)
                return [e[1] for e in w.wait_for(lambda ev: len(ev) == 16, "the released events")[8:]]
            finally:
                w.close()

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert sorted(first) == sorted(other) and first != other
    assert first != sorted(first)


def test_two_holds_on_one_object_release_only_when_both_are_gone(kube: KubeServer,
                                                                 watcher: Callable[..., Watcher]) -> None:
    kube.create(node("n1"))
    w = watcher()
    w.wait_for(lambda ev: len(ev) == 1, "the initial ADDED event")
    every, one = kube.hold_watch(resource="nodes"), kube.hold_watch(resource="nodes", name="n1")
    label(kube, "n1", "a")
    assert every.release() == 0 and one.pending == 1  # still held by the other hold
    kube.create(node("n2"))
    w.wait_for(lambda ev: [e[1] for e in ev] == ["n1", "n2"], "n2, created after the first release")
    assert one.release() == 1
    w.wait_for(lambda ev: [e[1] for e in ev] == ["n1", "n2", "n1"], "n1's change")


def test_release_watches_flushes_everything(kube: KubeServer, watcher: Callable[..., Watcher]) -> None:
    kube.create(node("n1"))
    w = watcher()
    w.wait_for(lambda ev: len(ev) == 1, "the initial ADDED event")
    kube.hold_watch(resource="nodes", name="n1")
    kube.delay_watch(resource="nodes", max_delay=600.0, min_delay=600.0, seed=1, name="n1")
    label(kube, "n1", "a")
    label(kube, "n1", "b")
    assert kube.release_watches() == 2
    w.wait_for(lambda ev: len(ev) == 3, "both changes")
    assert not kube.store.gate.active


def test_per_object_delays_are_reproducible_from_a_seed() -> None:
    names = [f"d{i}" for i in range(6)]

    def run(seed: int, interleaved: bool) -> dict[str, list[float]]:
        with KubeServer() as kube:
            delay = kube.delay_watch(resource="nodes", max_delay=0.05, seed=seed)
            for n in names:
                kube.create(node(n))
            order = [(n, s) for s in "ab" for n in names] if interleaved else \
                [(n, s) for n in reversed(names) for s in "ab"]
            for n, s in order:
                label(kube, n, s)
            return {n: delay.delays(n) for n in names}

    first = run(42, interleaved=True)
    assert all(len(d) == 3 and all(0.0 <= x <= 0.05 for x in d) for d in first.values())
    assert run(42, interleaved=False) == first  # independent of the other objects' changes
    other = run(43, interleaved=True)
    assert other != first and all(other[n] != first[n] for n in names)


def test_delays_reorder_objects_by_their_drawn_delay_but_keep_each_objects_order(
        kube: KubeServer, watcher: Callable[..., Watcher]) -> None:
    names = [f"r{i}" for i in range(5)]
    for n in names:
        kube.create(node(n))
    w = watcher()
    w.wait_for(lambda ev: len(ev) == 5, "the initial ADDED events")
    delay = kube.delay_watch(resource="nodes", max_delay=0.3, seed=5)

    def burst(store: Store) -> None:  # every change in one loop turn: due times differ by the delays only
        rt = store.find_type("v1", "Node")
        for n in names:
            store.patch(rt, None, n, "application/merge-patch+json", {"metadata": {"labels": {"k": "1"}}})
        for i in range(4):  # four more changes of r0: their delays may be shorter, the order must hold
            store.patch(rt, None, "r0", "application/merge-patch+json",
                        {"metadata": {"labels": {"k": str(i)}}})

    kube.call(burst)
    events = w.wait_for(lambda ev: len(ev) == 14, "every delayed change")[5:]
    first_delay = {n: delay.delays(n)[0] for n in names}
    ranked = sorted(names, key=first_delay.__getitem__)
    gaps = [first_delay[b] - first_delay[a] for a, b in itertools.pairwise(ranked)]
    assert min(gaps) > 0.002  # the premise for seed 5: the objects' delays are well apart
    first_seen = list(dict.fromkeys(e[1] for e in events))
    assert first_seen == ranked
    r0 = [e[2] for e in events if e[1] == "r0"]
    assert r0 == sorted(r0) and len(r0) == 5
    delay.stop()
    label(kube, "r1", "after")
    w.wait_for(lambda ev: len(ev) == 15, "an undelayed change after stop()")
