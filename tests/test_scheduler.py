"""The fair scheduler and the live-job bookkeeping, with real asyncio tasks (no Discord)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from bot.errors import TooManyJobs
from bot.livejobs import CallProgress, LiveJobs
from bot.scheduler import Scheduler


async def settle() -> None:
    """Let every ready task run until nothing changes (grants are chained callbacks)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Calls:
    """Provider calls that run until the test lets them finish, recording grant order."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.granted: list[str] = []
        self.running = 0
        self.peak = 0
        self.positions: dict[str, list[int]] = {}
        self._release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, owner: Hashable) -> asyncio.Task[None]:
        self._release[name] = asyncio.Event()
        self.positions[name] = []
        task = asyncio.create_task(self._call(name, owner))
        self.tasks[name] = task
        return task

    async def _call(self, name: str, owner: Hashable) -> None:
        async with self.scheduler.slot(owner, self.positions[name].append):
            self.granted.append(name)
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await self._release[name].wait()
            finally:
                self.running -= 1

    async def finish(self, name: str) -> None:
        self._release[name].set()
        await self.tasks[name]
        await settle()

    async def finish_running(self) -> None:
        """Finish the calls running now (not the ones they make room for)."""
        running = [n for n in self.granted if not self.tasks[n].done()]
        for name in running:
            await self.finish(name)


async def test_one_members_backlog_delays_each_other_member_by_at_most_one_slot() -> None:
    scheduler = Scheduler(max_concurrent=1, max_jobs_per_user=100)
    calls = Calls(scheduler)
    for i in range(20):
        calls.start(f"a{i}", "alice")
    await settle()
    for other in ("b", "c", "d", "e"):
        calls.start(other, other)
    await settle()
    assert calls.granted == ["a0"]  # alice's first call was already running

    while len(calls.granted) < 6:
        await calls.finish_running()
    # In a plain FIFO the others would wait behind all twenty of alice's calls. Round-robin
    # gives alice one more slot (she was first in line), then each of the others in turn.
    assert calls.granted == ["a0", "a1", "b", "c", "d", "e"]
    while any(not t.done() for t in calls.tasks.values()):
        await calls.finish_running()
    assert calls.granted[6:] == [f"a{i}" for i in range(2, 20)]
    assert calls.peak == 1


async def test_round_robin_interleaves_members_with_several_calls() -> None:
    scheduler = Scheduler(max_concurrent=1, max_jobs_per_user=100)
    calls = Calls(scheduler)
    calls.start("blocker", "nobody")
    await settle()
    for name in ("a1", "a2", "a3", "b1", "b2", "c1"):
        calls.start(name, name[0])
    await settle()
    while any(not t.done() for t in calls.tasks.values()):
        await calls.finish_running()
    assert calls.granted == ["blocker", "a1", "b1", "c1", "a2", "b2", "a3"]


async def test_never_more_than_max_concurrent_calls() -> None:
    scheduler = Scheduler(max_concurrent=3, max_jobs_per_user=100)
    calls = Calls(scheduler)
    for i in range(10):
        calls.start(f"x{i}", i % 4)
    await settle()
    assert calls.running == 3 and scheduler.running == 3 and scheduler.waiting == 7
    while any(not t.done() for t in calls.tasks.values()):
        await calls.finish_running()
        assert calls.running <= 3
    assert calls.peak == 3 and scheduler.running == 0 and scheduler.waiting == 0


async def test_waiting_calls_learn_their_place_in_line_as_it_moves() -> None:
    scheduler = Scheduler(max_concurrent=1, max_jobs_per_user=100, position_interval=0)
    calls = Calls(scheduler)
    calls.start("run", "x")
    await settle()
    for name in ("a1", "a2", "b1"):
        calls.start(name, name[0])
    await settle()
    # Order of service: a1, b1, a2 (round-robin), so a2 is third although queued second.
    assert calls.positions["a1"] == [1]
    assert calls.positions["b1"] == [2]
    assert calls.positions["a2"][-1] == 3

    await calls.finish("run")  # a1 starts
    assert calls.positions["b1"][-1] == 1 and calls.positions["a2"][-1] == 2
    # A callback fires only when the position changed.
    assert calls.positions["b1"] == [2, 1]
    await calls.finish("a1")
    await calls.finish("b1")
    await calls.finish("a2")


async def test_cancelled_waiter_leaves_the_queue_and_others_move_up() -> None:
    scheduler = Scheduler(max_concurrent=1, max_jobs_per_user=100, position_interval=0)
    calls = Calls(scheduler)
    calls.start("run", "x")
    await settle()
    calls.start("a", "a")
    calls.start("b", "b")
    await settle()
    assert calls.positions["b"] == [2]

    calls.tasks["a"].cancel()
    await settle()
    assert calls.tasks["a"].cancelled()
    assert scheduler.waiting == 1
    assert calls.positions["b"] == [2, 1]
    await calls.finish("run")
    assert calls.granted == ["run", "b"]
    await calls.finish("b")
    assert scheduler.running == 0


async def test_a_waiter_cancelled_as_it_is_granted_gives_its_slot_back() -> None:
    scheduler = Scheduler(max_concurrent=1, max_jobs_per_user=100)
    calls = Calls(scheduler)
    calls.start("run", "x")
    await settle()
    calls.start("a", "a")
    calls.start("b", "b")
    await settle()
    # Finishing "run" grants "a" at once; cancel "a" before its task resumes.
    calls._release["run"].set()
    await asyncio.sleep(0)  # "run" leaves its slot and hands it to "a"
    assert scheduler.waiting == 1 and scheduler.running == 1 and "a" not in calls.granted
    calls.tasks["a"].cancel()
    await settle()
    assert calls.tasks["a"].cancelled()
    assert "a" not in calls.granted
    assert calls.granted[-1] == "b"  # the slot went on to the next in line
    await calls.finish("b")
    assert scheduler.running == 0


async def test_per_member_job_limit_is_checked_without_an_await() -> None:
    scheduler = Scheduler(max_concurrent=2, max_jobs_per_user=2)
    scheduler.admit("alice")
    scheduler.admit("alice")
    with pytest.raises(TooManyJobs) as refused:
        scheduler.admit("alice")
    assert "2 image jobs" in refused.value.user_message
    scheduler.admit("bob")  # the limit is per member
    scheduler.finish("alice")
    scheduler.admit("alice")
    # Jobs resumed after a restart are counted but never refused.
    scheduler.force_admit("alice")
    assert scheduler.jobs_of("alice") == 3
    for _ in range(3):
        scheduler.finish("alice")
    assert scheduler.jobs_of("alice") == 0


async def test_call_progress_reports_the_best_position_until_started() -> None:
    shown: list[int] = []
    progress = CallProgress(shown.append)
    first, second = progress.tracker(0), progress.tracker(1)
    first(4)
    second(2)
    first(3)
    assert shown == [4, 2, 2]
    progress.started = True
    second(1)
    assert shown == [4, 2, 2]


async def test_live_jobs_cancel_waits_for_the_job_to_handle_it() -> None:
    live = LiveJobs()
    handled: list[str] = []

    async def job() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            handled.append("cancelled")
            raise

    task = asyncio.create_task(job())
    waiting = live.watch("k1", 7, task)
    await settle()

    async def owner_of_the_job() -> None:
        try:
            await task
        except asyncio.CancelledError:
            live.end(waiting)

    watcher = asyncio.create_task(owner_of_the_job())
    assert await asyncio.wait_for(live.cancel(waiting), 1) is True
    assert handled == ["cancelled"] and live.waiting("k1") is None
    await watcher


async def test_live_jobs_cancel_of_a_job_that_just_ended_says_so() -> None:
    live = LiveJobs()

    async def job() -> str:
        return "failed on its own"

    task = asyncio.create_task(job())
    waiting = live.watch("k2", 7, task)
    await asyncio.sleep(0)
    assert task.done()  # done, but its owner has not resumed to record that yet
    ending = asyncio.get_running_loop().call_soon(live.end, waiting)
    assert await asyncio.wait_for(live.cancel(waiting), 1) is False
    ending.cancel()


async def test_live_jobs_drain_waits_for_started_jobs_only() -> None:
    live = LiveJobs()
    started_task = asyncio.create_task(asyncio.sleep(10))
    queued_task = asyncio.create_task(asyncio.sleep(10))
    started = live.watch("s", 1, started_task)
    live.watch("q", 2, queued_task)
    live.begin("s")
    assert live.waiting("s") is None and live.waiting("q") is not None
    live.stop_accepting()
    assert not live.accepting
    quiet = asyncio.create_task(live.wait_quiet())
    held = asyncio.create_task(live.hold())
    await settle()
    assert not quiet.done() and not held.done()
    live.end(started)
    await asyncio.wait_for(quiet, 1)
    assert not held.done()  # queued work stays held until the process ends
    for task in (started_task, queued_task, held):
        task.cancel()
    await asyncio.gather(started_task, queued_task, held, return_exceptions=True)
