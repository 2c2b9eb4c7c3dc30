"""Hold back, delay and reorder the watch events of chosen objects: a lagging watch, on purpose.

What it models: a controller's view of the API (a kopf index, an informer cache) lags the store. The store
commits at once (GET/LIST and every write see the new object, resourceVersions advance), only the *watch
fan-out* of the chosen objects' changes waits: held (until released) or delayed (by a seeded random
amount per change). A gated change reaches every open watch stream at the same moment, and watches that
resume from a resourceVersion do not replay a change that is still gated (it comes when released), so a
lag never loses an event for a client that stays connected.

Ordering, and why: one real watch stream delivers every event in resourceVersion order. What a controller
sees does reorder *across* objects (kopf and client-go process objects on separate workers; caches of
different resources lag independently), so that is what the gate does by default: each object's own
events keep their order, while objects overtake one another. ``release(keep_object_order=False)`` also
lets an object's older state arrive after its newer one (a stale snapshot, as when two caches or a
relist from a lagging cache disagree): not what one apiserver stream does, offered to test staleness.

Limits: a change released while a client is disconnected reaches only the streams open at that moment;
if that client resumes from a resourceVersion beyond the held change (it saw a later event of another
object), it will not see it until it relists, as with any watch that skipped an event.

Thread model: a :class:`WatchGate` lives on the emulator's event loop and is only touched there; the
handles marshal their calls onto that loop through the ``run`` function given to them, so tests call
them from any thread. The store checks ``gate.active`` once per change: nothing is spent when unused.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from routectl.sim.kube_store import Change

T = TypeVar("T")
ObjectRef = tuple[str, str, str | None, str]  # (group, plural, namespace, name)
Runner = Callable[[Callable[[], T]], T]
ReleaseOrder = Literal["fifo", "reverse", "shuffled"]


def _here(fn: Callable[[], T]) -> T:
    return fn()


@dataclass(frozen=True)
class Target:
    """Which objects a hold or delay applies to: a resource (plural), optionally one name / namespace /
    API group (``None`` matches any)."""

    resource: str
    name: str | None = None
    namespace: str | None = None
    group: str | None = None

    def matches(self, ref: ObjectRef) -> bool:
        """Whether the object ``ref`` is targeted."""
        group, plural, namespace, name = ref
        return (plural == self.resource and (self.group is None or self.group == group)
                and (self.name is None or self.name == name)
                and (self.namespace is None or self.namespace == namespace))


@dataclass
class _Pending:
    change: Change
    due: float  # loop time before which it is not delivered (0: no delay)
    blockers: set[int]  # ids of the holds keeping it back


class WatchHold:
    """A hold on the watch events of the targeted objects; nothing of theirs is delivered until released.

    Obtain one from ``KubeServer.hold_watch(...)``. ``pending`` counts the events it holds back now.
    """

    def __init__(self, gate: WatchGate, hold_id: int, target: Target, run: Runner[object]) -> None:
        self._gate, self.id, self.target, self._run = gate, hold_id, target, run
        self.released = False

    @property
    def pending(self) -> int:
        """How many events this hold keeps back right now."""
        return self._run(lambda: self._gate.count_held(self.id))  # type: ignore[return-value]

    def release(self, order: ReleaseOrder = "fifo", seed: int | None = None,
                keep_object_order: bool = True) -> int:
        """Deliver the held events now: ``fifo`` (resourceVersion order), ``reverse`` or ``shuffled`` (from
        ``seed``) across objects; each object's own events stay in order unless ``keep_object_order`` is
        False. Events still held by another hold, or still delayed, stay queued. Returns how many were
        delivered. Idempotent."""
        return self._run(lambda: self._gate.release(self, order, seed, keep_object_order))  # type: ignore


class WatchDelay:
    """Delays every watch event of the targeted objects by ``min_delay..max_delay`` seconds, drawn per
    change from a random stream of its own per object (seeded by ``seed`` and the object's identity), so
    an object's delays do not depend on what happens to other objects. ``delays(name)`` lists the
    delays drawn so far for one object; :meth:`stop` ends the delaying (events already delayed still
    wait their time)."""

    def __init__(self, gate: WatchGate, delay_id: int, target: Target, min_delay: float, max_delay: float,
                 seed: int, run: Runner[object]) -> None:
        if not 0.0 <= min_delay <= max_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        self._gate, self.id, self.target, self._run = gate, delay_id, target, run
        self.min_delay, self.max_delay, self.seed = min_delay, max_delay, seed
        self._rngs: dict[ObjectRef, random.Random] = {}
        self._drawn: dict[ObjectRef, list[float]] = collections.defaultdict(list)
        self.stopped = False

    def draw(self, ref: ObjectRef) -> float:
        """The next delay for one object (on the emulator's loop)."""
        rng = self._rngs.get(ref)
        if rng is None:
            rng = self._rngs[ref] = random.Random(f"{self.seed}|{ref[0]}|{ref[1]}|{ref[2] or ''}|{ref[3]}")
        value = rng.uniform(self.min_delay, self.max_delay)
        self._drawn[ref].append(value)
        return value

    def delays(self, name: str, namespace: str | None = None) -> list[float]:
        """The delays drawn so far for the object ``name`` (in ``namespace``), in the order of its changes."""
        def read() -> list[float]:
            return [d for ref, ds in self._drawn.items() if ref[3] == name
                    and (namespace is None or ref[2] == namespace) for d in ds]
        return self._run(read)  # type: ignore[return-value]

    def stop(self) -> None:
        """Delay no further changes (idempotent)."""
        self._run(lambda: self._gate.stop_delay(self))


@dataclass
class WatchGate:
    """Sits between the store's commits and the watch streams; see the module docstring."""

    deliver: Callable[[Change], None]
    active: bool = False
    held_rvs: set[int] = field(default_factory=set)  # changes not yet delivered (watch resume skips them)
    _holds: dict[int, WatchHold] = field(default_factory=dict)
    _delays: dict[int, WatchDelay] = field(default_factory=dict)
    _queues: dict[ObjectRef, collections.deque[_Pending]] = field(default_factory=dict)
    _timers: dict[ObjectRef, asyncio.TimerHandle] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------------------------ handles
    def hold(self, target: Target, run: Runner[object] = _here) -> WatchHold:
        """Start holding back the targeted objects' events."""
        handle = WatchHold(self, next(self._ids), target, run)
        self._holds[handle.id] = handle
        self._refresh()
        return handle

    def delay(self, target: Target, min_delay: float, max_delay: float, seed: int,
              run: Runner[object] = _here) -> WatchDelay:
        """Start delaying the targeted objects' events by a seeded random amount each."""
        handle = WatchDelay(self, next(self._ids), target, min_delay, max_delay, seed, run)
        self._delays[handle.id] = handle
        self._refresh()
        return handle

    def stop_delay(self, handle: WatchDelay) -> None:
        """End a delay (already delayed events keep their due time)."""
        handle.stopped = True
        self._delays.pop(handle.id, None)
        self._refresh()

    def count_held(self, hold_id: int) -> int:
        """Events the hold ``hold_id`` keeps back."""
        return sum(1 for q in self._queues.values() for p in q if hold_id in p.blockers)

    def release_all(self) -> int:
        """Release every hold, stop every delay and deliver everything queued now; returns the count."""
        for d in list(self._delays.values()):
            self.stop_delay(d)
        for h in list(self._holds.values()):
            h.released = True
            self._holds.pop(h.id)
        delivered = 0
        for ref, queue in list(self._queues.items()):
            timer = self._timers.pop(ref, None)
            if timer is not None:
                timer.cancel()
            while queue:
                self._send(queue.popleft())
                delivered += 1
            del self._queues[ref]
        self._refresh()
        return delivered

    # ------------------------------------------------------------------------------------ the gate
    def intercept(self, change: Change) -> bool:
        """Queue ``change`` if it must wait (held, delayed, or behind its object's queued events)."""
        meta = change.obj.get("metadata") or {}
        ref: ObjectRef = (change.key[0], change.key[1], meta.get("namespace"), str(meta.get("name", "")))
        blockers = {h.id for h in self._holds.values() if h.target.matches(ref)}
        delay = max((d.draw(ref) for d in self._delays.values() if d.target.matches(ref)), default=0.0)
        queue = self._queues.get(ref)
        if not blockers and delay <= 0.0 and not queue:
            return False
        due = asyncio.get_running_loop().time() + delay if delay > 0.0 else 0.0
        if queue is None:
            queue = self._queues[ref] = collections.deque()
        queue.append(_Pending(change, due, blockers))
        self.held_rvs.add(change.rv)
        self.active = True
        if len(queue) == 1:
            self._pump(ref)
        return True

    def release(self, handle: WatchHold, order: ReleaseOrder, seed: int | None,
                keep_object_order: bool) -> int:
        """Drop one hold and deliver what it freed, in the order asked (see :meth:`WatchHold.release`)."""
        if handle.released:
            return 0
        if order not in ("fifo", "reverse", "shuffled"):
            raise ValueError(f"unknown release order {order!r}")
        handle.released = True
        self._holds.pop(handle.id, None)
        now = self._now()
        ready: list[tuple[ObjectRef, _Pending]] = []
        for ref, queue in self._queues.items():
            for pending in queue:
                pending.blockers.discard(handle.id)
            for pending in queue:  # the deliverable prefix of this object's queue
                if pending.blockers or pending.due > now:
                    break
                ready.append((ref, pending))
        ready.sort(key=lambda rp: rp[1].change.rv)
        if order == "reverse":
            ready.reverse()
        elif order == "shuffled":
            random.Random(seed).shuffle(ready)
        if keep_object_order:  # each object's events go, in rv order, into the slots the permutation gave it
            per_object: dict[ObjectRef, collections.deque[_Pending]] = collections.defaultdict(
                collections.deque)
            for ref, pending in sorted(ready, key=lambda rp: rp[1].change.rv):
                per_object[ref].append(pending)
            ready = [(ref, per_object[ref].popleft()) for ref, _ in ready]
        for ref, _ in ready:
            self._queues[ref].popleft()  # the ready entries are exactly each queue's prefix
        for _, pending in ready:
            self._send(pending)
        for ref in {ref for ref, _ in ready} | set(self._queues):
            self._pump(ref)
        self._refresh()
        return len(ready)

    # ------------------------------------------------------------------------------------ internals
    def _pump(self, ref: ObjectRef) -> None:
        """Deliver the object's queue from the head while it may go; schedule a timer for a delayed head."""
        timer = self._timers.pop(ref, None)
        if timer is not None:
            timer.cancel()
        queue = self._queues.get(ref)
        now = self._now() if queue else 0.0
        while queue:
            head = queue[0]
            if head.blockers:
                return
            if head.due > now:
                loop = asyncio.get_running_loop()
                self._timers[ref] = loop.call_at(head.due, self._fire, ref)
                return
            self._send(queue.popleft())
        self._queues.pop(ref, None)
        self._refresh()

    def _fire(self, ref: ObjectRef) -> None:
        self._pump(ref)

    def _send(self, pending: _Pending) -> None:
        self.held_rvs.discard(pending.change.rv)
        self.deliver(pending.change)

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # no loop (the store used directly): no delay can be pending
            return 0.0

    def _refresh(self) -> None:
        self.active = bool(self._holds or self._delays or self._queues)
