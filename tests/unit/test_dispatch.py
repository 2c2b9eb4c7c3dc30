"""Dispatcher: per-object order, coalescing of queued versions, DELETED kept, objects concurrent."""

from __future__ import annotations

import asyncio

from routectl.controller.dispatch import Dispatcher


def test_versions_of_one_object_run_in_order_and_queued_ones_coalesce_but_never_past_a_deletion() -> None:
    async def go() -> tuple[list[tuple[str, str]], int]:
        gate = asyncio.Event()
        done: list[tuple[str, str]] = []

        async def handle(event_type: str, item: str) -> None:
            if item == "v1":
                await gate.wait()  # the first version is being handled while the rest arrive
            done.append((event_type, item))

        d: Dispatcher[str] = Dispatcher(handle)
        d.submit("ADDED", "n", "v1")
        await asyncio.sleep(0)
        for etype, item in [("MODIFIED", "v2"), ("MODIFIED", "v3"), ("DELETED", "v4"),
                            ("ADDED", "w1"), ("MODIFIED", "w2")]:
            d.submit(etype, "n", item)
        gate.set()
        await d.idle()
        return done, d.coalesced

    done, coalesced = asyncio.run(go())
    assert done == [("ADDED", "v1"), ("MODIFIED", "v3"), ("DELETED", "v4"), ("MODIFIED", "w2")]
    assert coalesced == 2


def test_objects_are_handled_concurrently_and_a_failure_does_not_stop_the_next_version() -> None:
    async def go() -> tuple[list[str], int]:
        release = asyncio.Event()
        done: list[str] = []

        async def handle(_t: str, item: str) -> None:
            if item == "slow":
                await release.wait()
            if item == "bad":
                raise RuntimeError("boom")
            done.append(item)

        d: Dispatcher[str] = Dispatcher(handle)
        d.submit("ADDED", "a", "slow")
        d.submit("ADDED", "b", "fast")  # not held up behind a's handler
        d.submit("ADDED", "c", "bad")
        await asyncio.sleep(0.05)
        d.submit("MODIFIED", "c", "good")
        await asyncio.sleep(0.05)
        assert done == ["fast", "good"] and d.busy == 1
        release.set()
        await d.idle()
        return done, d.failures

    done, failures = asyncio.run(go())
    assert done == ["fast", "good", "slow"] and failures == 1


def test_at_most_limit_objects_are_handled_at_once_and_the_rest_wait_their_turn_in_order() -> None:
    async def go() -> tuple[list[str], int]:
        running: set[str] = set()
        most = 0
        done: list[str] = []

        async def handle(_t: str, item: str) -> None:
            nonlocal most
            running.add(item)
            most = max(most, len(running))
            await asyncio.sleep(0.01)
            running.discard(item)
            done.append(item)

        d: Dispatcher[str] = Dispatcher(handle, limit=2)
        for i in range(6):
            d.submit("ADDED", f"n{i}", f"n{i}.v1")
        d.submit("MODIFIED", "n5", "n5.v2")  # queued while n5 waits for its turn: coalesced
        await d.idle()
        return done, most

    done, most = asyncio.run(go())
    assert most == 2
    assert sorted(done) == ["n0.v1", "n1.v1", "n2.v1", "n3.v1", "n4.v1", "n5.v2"]
    assert done.index("n2.v1") < done.index("n4.v1")  # turns in arrival order
