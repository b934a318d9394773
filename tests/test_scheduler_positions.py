"""Queue positions told to waiting calls are the order the scheduler then serves them in."""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.scheduler import Scheduler


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.parametrize("seed", range(5))
async def test_the_last_position_each_waiter_heard_is_its_place_in_the_serving_order(
    seed: int,
) -> None:
    rng = random.Random(seed)
    scheduler = Scheduler(max_concurrent=1, max_jobs_per_user=100, position_interval=0)
    heard: dict[int, list[int]] = {}
    served: list[int] = []
    release: dict[int, asyncio.Event] = {}

    async def call(number: int, owner: str) -> None:
        async with scheduler.slot(owner, heard.setdefault(number, []).append):
            served.append(number)
            await release[number].wait()

    owners = [f"member{n}" for n in range(rng.randint(1, 8))]
    tasks = []
    for number in range(rng.randint(2, 40)):
        release[number] = asyncio.Event()
        tasks.append(asyncio.create_task(call(number, rng.choice(owners))))
        await settle()
    # Call 0 took the one slot; everyone else waits and has been told a position.
    promised = {n: positions[-1] for n, positions in heard.items() if positions}
    for _ in tasks:
        release[served[-1]].set()
        await settle()
    await asyncio.gather(*tasks)
    assert sorted(promised.values()) == list(range(1, len(promised) + 1))
    for number, position in promised.items():
        assert served.index(number) == position  # served[0] is the call that never waited


async def test_positions_are_recounted_once_per_interval_however_many_grants() -> None:
    scheduler = Scheduler(max_concurrent=1, max_jobs_per_user=1000, position_interval=0.2)
    heard: dict[int, list[int]] = {}
    release = {n: asyncio.Event() for n in range(301)}

    async def call(number: int) -> None:
        async with scheduler.slot(f"member{number}", heard.setdefault(number, []).append):
            await release[number].wait()

    tasks = [asyncio.create_task(call(n)) for n in range(301)]
    await asyncio.sleep(0.3)
    assert heard[300] == [300]  # one count for 300 arrivals
    for number in range(100):  # a hundred grants in quick succession
        release[number].set()
        await settle()
    assert heard[300] == [300]  # not yet recounted
    await asyncio.sleep(0.3)
    assert heard[300] == [300, 200]  # once, to where it now stands
    for event in release.values():
        event.set()
    await asyncio.gather(*tasks)
