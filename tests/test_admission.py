"""The byte budget: bounded, first come first served, and safe under cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.admission import DEFAULT_MAX_BYTES_IN_FLIGHT, ByteBudget, Grant, turn_bytes
from tests.harness import Harness, png_bytes


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(5):
        await asyncio.sleep(0)


def start(budget: ByteBudget, size: int) -> asyncio.Task[Grant]:
    return asyncio.ensure_future(budget.acquire(size))


async def test_grants_at_once_while_it_fits_and_counts_what_is_held() -> None:
    budget = ByteBudget(100)
    first = await budget.acquire(60)
    second = await budget.acquire(40)
    assert (first.size, second.size) == (60, 40)
    assert (budget.in_use, budget.available, budget.waiting) == (100, 0, 0)
    first.release()
    assert budget.in_use == 40


async def test_a_request_that_does_not_fit_waits_until_bytes_come_back() -> None:
    budget = ByteBudget(100)
    held = await budget.acquire(80)
    waiting = start(budget, 30)
    await settle()
    assert not waiting.done() and budget.waiting == 1
    held.release()
    await settle()
    assert waiting.done() and waiting.result().size == 30
    assert budget.in_use == 30


async def test_first_come_first_served_a_small_request_does_not_overtake_a_large_one() -> None:
    budget = ByteBudget(100)
    held = await budget.acquire(50)
    large = start(budget, 90)
    await settle()
    small = start(budget, 10)  # would fit now, but the large one asked first
    await settle()
    assert not large.done() and not small.done()
    held.release()
    await settle()
    assert large.done() and small.done()
    assert budget.in_use == 100


async def test_waiters_are_served_in_the_order_they_asked() -> None:
    budget = ByteBudget(10)
    held = await budget.acquire(10)
    order: list[int] = []

    async def ask(number: int) -> None:
        grant = await budget.acquire(10)
        order.append(number)
        grant.release()

    tasks = [asyncio.ensure_future(ask(n)) for n in range(5)]
    await settle()
    held.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert budget.in_use == 0


async def test_a_request_larger_than_the_budget_is_cut_to_it_and_runs_alone() -> None:
    budget = ByteBudget(100)
    held = await budget.acquire(1)
    huge = start(budget, 10_000)
    await settle()
    assert not huge.done()
    held.release()
    await settle()
    assert huge.result().size == 100 and budget.in_use == 100


async def test_nothing_asked_is_never_held_back() -> None:
    budget = ByteBudget(100)
    await budget.acquire(100)
    blocked = start(budget, 50)
    await settle()
    grant = await asyncio.wait_for(budget.acquire(0), 1)
    assert grant.size == 0 and not blocked.done()
    assert (await budget.acquire(-5)).size == 0


async def test_shrinking_gives_bytes_back_and_wakes_waiters_but_never_grows() -> None:
    budget = ByteBudget(100)
    grant = await budget.acquire(100)
    waiting = start(budget, 70)
    await settle()
    grant.shrink_to(50)
    await settle()
    assert not waiting.done() and budget.in_use == 50
    grant.shrink_to(80)  # asking for more does nothing
    assert grant.size == 50 and budget.in_use == 50
    grant.shrink_to(30)
    await settle()
    assert waiting.done() and budget.in_use == 100
    grant.release()
    grant.release()  # idempotent
    assert budget.in_use == 70


async def test_a_cancelled_waiter_leaves_the_line_and_lets_the_next_one_in() -> None:
    budget = ByteBudget(100)
    held = await budget.acquire(60)
    blocked_head = start(budget, 50)
    behind = start(budget, 40)  # fits beside `held`, but waits behind the head
    await settle()
    assert not behind.done()
    blocked_head.cancel()
    await settle()
    assert blocked_head.cancelled()
    assert behind.done() and budget.in_use == 100 and budget.waiting == 0
    held.release()
    assert budget.in_use == 40


async def test_bytes_granted_to_a_waiter_cancelled_at_that_moment_are_handed_on() -> None:
    budget = ByteBudget(100)
    held = await budget.acquire(100)
    first = start(budget, 100)
    second = start(budget, 100)
    await settle()
    held.release()  # grants `first` ...
    first.cancel()  # ... which is cancelled before it runs again
    await settle()
    assert first.cancelled()
    assert second.done() and budget.in_use == 100


async def test_hold_releases_when_the_block_raises() -> None:
    budget = ByteBudget(100)
    with pytest.raises(RuntimeError):
        async with budget.hold(70) as grant:
            assert grant.size == 70 and budget.in_use == 70
            raise RuntimeError("turn failed")
    assert budget.in_use == 0


async def test_a_release_lets_in_the_longest_run_of_waiters_that_fits_and_no_more() -> None:
    budget = ByteBudget(100)
    held = await budget.acquire(100)
    tasks = [start(budget, size) for size in (60, 30, 50, 10)]
    await settle()
    held.release()
    await settle()
    # 60 + 30 fit; 50 does not, and 10 (which would fit) stays behind it.
    assert [t.done() for t in tasks] == [True, True, False, False]
    assert budget.in_use == 90


async def test_under_random_load_the_budget_is_never_exceeded_and_nothing_leaks() -> None:
    rng = random.Random(7)
    budget = ByteBudget(1000)
    peak = 0

    async def turn(size: int) -> None:
        nonlocal peak
        async with budget.hold(size) as grant:
            peak = max(peak, budget.in_use)
            await asyncio.sleep(rng.random() / 1000)
            grant.shrink_to(size // 3)
            await asyncio.sleep(rng.random() / 1000)

    sizes = [rng.choice([0, 1, 50, 300, 700, 1000, 5000]) for _ in range(300)]
    tasks = [asyncio.ensure_future(turn(size)) for size in sizes]
    for task in tasks[::7]:
        task.cancel()  # some members give up while waiting or while holding
    await asyncio.gather(*tasks, return_exceptions=True)
    assert 0 < peak <= budget.capacity
    assert budget.in_use == 0 and budget.waiting == 0


def test_turn_bytes_counts_the_images_and_one_base64_copy_per_call() -> None:
    assert turn_bytes(0, calls=4) == 0
    assert turn_bytes(3_000_000) == 3_000_000 + 4_000_000
    assert turn_bytes(3_000_000, calls=2) == 3_000_000 + 8_000_000
    assert DEFAULT_MAX_BYTES_IN_FLIGHT == 256 * 1024 * 1024


def test_a_budget_needs_room() -> None:
    with pytest.raises(ValueError):
        ByteBudget(0)


async def test_a_turn_waits_for_bytes_after_its_ack_and_before_its_download(
    gemini_bot: Harness,
) -> None:
    fake, gemini, budget = gemini_bot.discord, gemini_bot.upstream, gemini_bot.service.admission
    photo = png_bytes(300, 200, (10, 120, 200))
    attachment = fake.add_attachment(photo, "photo.png", "image/png")
    blocker = await budget.acquire(budget.capacity)
    calls_before = len(gemini.requests)

    interaction = await fake.slash(
        "imagine", {"prompt": "in watercolour", "image": attachment}, user=fake.alice
    )
    await fake.wait_until(lambda: interaction.acknowledged_at is not None)
    await fake.wait_until(lambda: budget.waiting == 1)
    assert fake.cdn_requests == [] and len(gemini.requests) == calls_before

    blocker.release()
    await fake.wait_until(
        lambda: any(m.attachments for m in interaction.messages()), timeout=10
    )
    assert gemini.requests[-1].images == [("image/png", photo)]
    await fake.wait_until(lambda: budget.in_use == 0 and budget.waiting == 0)


async def test_a_turn_without_references_never_waits_for_bytes(gemini_bot: Harness) -> None:
    fake, budget = gemini_bot.discord, gemini_bot.service.admission
    blocker = await budget.acquire(budget.capacity)
    interaction = await fake.slash("imagine", {"prompt": "a quiet harbour"}, user=fake.alice)
    await fake.wait_until(
        lambda: any(m.attachments for m in interaction.messages()), timeout=10
    )
    blocker.release()
    await fake.wait_until(lambda: budget.in_use == 0)
