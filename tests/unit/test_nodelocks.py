"""NodeLocks: one coroutine per node name at a time, and no lock left behind once nobody uses it."""

from __future__ import annotations

import asyncio

from routectl.controller.nodelocks import NodeLocks


async def test_a_waiter_keeps_the_lock_alive_so_no_second_lock_runs_beside_it() -> None:
    locks = NodeLocks()
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    gates = {who: asyncio.Event() for who in ("first", "second", "third")}

    async def work(who: str) -> None:
        async with locks.hold("node-a"):
            inside.append(who)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            await gates[who].wait()
            inside.remove(who)

    async def ticks() -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    first = asyncio.create_task(work("first"))
    await ticks()
    second = asyncio.create_task(work("second"))  # waits for the first
    await ticks()
    assert inside == ["first"] and locks.users("node-a") == 2
    gates["first"].set()
    await first
    await ticks()
    assert inside == ["second"]
    # the first left while the second held on: a newcomer must queue behind it, not run beside it
    third = asyncio.create_task(work("third"))
    await ticks()
    assert inside == ["second"], f"two coroutines hold node-a at once: {overlaps}"
    gates["second"].set()
    gates["third"].set()
    await asyncio.gather(second, third)
    assert not overlaps
    assert len(locks) == 0 and locks.users("node-a") == 0  # forgotten once the last user left


async def test_names_do_not_block_each_other() -> None:
    locks = NodeLocks()
    async with locks.hold("a"):
        async with asyncio.timeout(5):
            async with locks.hold("b"):
                assert len(locks) == 2
    assert len(locks) == 0
