"""The published poll schedules, read as data, and the poll loop against a scripted task."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from bot.errors import ProviderTimeout
from bot.providers.polling import (
    PollSchedule,
    TaskSnapshot,
    TaskState,
    classify_status,
    poll_task,
)


def gaps(offsets: list[float]) -> list[tuple[float, float]]:
    """(time of a check, wait until the next one) pairs."""
    return [(a, b - a) for a, b in itertools.pairwise(offsets)]


def test_linkmodel_schedule_matches_the_published_one() -> None:
    offsets = list(PollSchedule.linkmodel().offsets())

    assert offsets[0] == 10.0  # nothing for the first 10 s
    for at, gap in gaps(offsets):
        assert gap == (3.0 if at < 60 else 6.0 if at < 180 else 10.0), at
    assert 890 <= offsets[-1] <= 900  # then time out at 15 min


def test_apimart_schedule_is_every_two_seconds_for_120_checks() -> None:
    offsets = list(PollSchedule.apimart().offsets())
    assert len(offsets) == 120
    assert offsets[0] == 2.0
    assert {gap for _, gap in gaps(offsets)} == {2.0}


def test_gmi_fallback_schedule() -> None:
    offsets = list(PollSchedule.gmi().offsets())
    assert offsets[:3] == [1.0, 2.0, 3.0]
    assert offsets[-1] <= 600
    assert {gap for at, gap in gaps(offsets) if at >= 10} == {2.0}


def test_scaled_keeps_the_shape() -> None:
    schedule = PollSchedule.linkmodel()
    fast = schedule.scaled(0.001)
    assert list(fast.offsets()) == pytest.approx([t * 0.001 for t in schedule.offsets()])
    assert fast.deadline == pytest.approx(0.9)


def test_a_schedule_needs_positive_intervals() -> None:
    with pytest.raises(ValueError):
        PollSchedule(0.0, ((10.0, 0.0),), deadline=10.0)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Pending", TaskState.PENDING), ("IN_PROGRESS", TaskState.PENDING),
        (" Success ", TaskState.SUCCEEDED), ("Canceled", TaskState.CANCELLED),
        ("ERROR", TaskState.FAILED), ("exploded", None),
    ],
)
def test_classify_status(status: str, state: TaskState | None) -> None:
    assert classify_status(status) is state


def scripted(*states: TaskState) -> tuple[list[float], Callable[[], Awaitable[TaskSnapshot]]]:
    """A query answering `states` in turn (the last one forever), noting when it was asked."""
    loop = asyncio.get_running_loop()
    asked: list[float] = []
    answers = iter(states)

    async def query() -> TaskSnapshot:
        asked.append(loop.time())
        state = next(answers, states[-1])
        return TaskSnapshot("t1", state, state.value)

    return asked, query


async def test_poll_returns_the_finished_task_after_the_initial_delay() -> None:
    loop = asyncio.get_running_loop()
    asked, query = scripted(TaskState.PENDING, TaskState.PENDING, TaskState.SUCCEEDED)
    start = loop.time()

    schedule = PollSchedule.fixed(0.01, 1.0, initial_delay=0.05)
    done = await poll_task(query, schedule, provider="test", task_id="t1")

    assert done.state is TaskState.SUCCEEDED
    assert len(asked) == 3
    assert asked[0] - start >= 0.05


async def test_poll_runs_out_with_a_clear_timeout() -> None:
    asked, query = scripted(TaskState.PENDING)

    with pytest.raises(ProviderTimeout) as caught:
        await poll_task(query, PollSchedule.fixed(0.01, 0.1), provider="test", task_id="t1")

    assert "task t1 still pending" in caught.value.detail
    assert 5 <= len(asked) <= 11


async def test_poll_stops_at_max_checks() -> None:
    asked, query = scripted(TaskState.PENDING)
    schedule = PollSchedule(0.0, ((10.0, 0.001),), deadline=10.0, max_checks=4)

    with pytest.raises(ProviderTimeout):
        await poll_task(query, schedule, provider="test", task_id="t1")

    assert len(asked) == 4
