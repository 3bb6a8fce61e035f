"""KeyedLocks: one holder per key at a time, and nothing kept for keys no task uses."""

import asyncio

import pytest

from vigil.common.locks import Busy, KeyedLocks


async def test_one_holder_per_key_and_other_keys_run_beside_it() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: str, label: str) -> None:
        async with locks.hold(key):
            order.append(f"{label} in")
            await asyncio.sleep(0.01)
            order.append(f"{label} out")

    await asyncio.gather(work("a", "a1"), work("a", "a2"), work("b", "b1"))
    assert order.index("a1 out") < order.index("a2 in")
    assert order.index("b1 in") < order.index("a1 out")
    assert len(locks) == 0


async def test_a_waiter_cancelled_or_a_holder_failing_leaves_nothing_behind() -> None:
    locks = KeyedLocks()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("a"):
            entered.set()
            await release.wait()
            raise RuntimeError("failed while holding")

    async def waiter() -> None:
        async with locks.hold("a"):
            raise AssertionError("the waiter was cancelled before its turn")

    first = asyncio.create_task(holder())
    await entered.wait()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert len(locks) == 1
    second.cancel()
    release.set()
    with pytest.raises(RuntimeError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert len(locks) == 0


async def test_a_bounded_wait_gives_up_and_leaves_the_holder_alone() -> None:
    locks = KeyedLocks()
    async with locks.hold("a"):
        with pytest.raises(Busy):
            async with locks.hold("a", wait=0.01):
                raise AssertionError("held twice")
        assert len(locks) == 1
    async with locks.hold("a", wait=0.01):
        pass
    assert len(locks) == 0
