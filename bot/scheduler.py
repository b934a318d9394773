"""A fair scheduler for provider calls.

At most `max_concurrent` calls run at once. Waiting calls are granted round-robin across
members: each member with something waiting gets one slot in turn, so one member's
backlog of twenty never delays four others' single jobs by more than one slot. The
per-member job limit is checked synchronously (no await between check and count), so
two simultaneous commands cannot both slip under it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.errors import TooManyJobs

PositionCallback = Callable[[int], None]


@dataclass(eq=False)
class _Waiter:
    owner: Hashable
    future: asyncio.Future[None]
    on_position: PositionCallback | None = None
    last_position: int = field(default=0)


# Queue positions are recounted at most this often: members see them through status edits
# throttled to one per 1.5 s, and a recount walks every waiter.
POSITION_INTERVAL = 0.25


class Scheduler:
    def __init__(
        self, *, max_concurrent: int, max_jobs_per_user: int,
        position_interval: float = POSITION_INTERVAL,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_jobs_per_user = max_jobs_per_user
        self.position_interval = position_interval
        self._positions_due: asyncio.Handle | None = None
        self._running = 0
        self._queues: OrderedDict[Hashable, deque[_Waiter]] = OrderedDict()
        self._jobs: dict[Hashable, int] = {}

    # -- per-member job admission -------------------------------------------------------

    def admit(self, owner: Hashable) -> None:
        """Count a new job for `owner`, or raise TooManyJobs. Pair with `finish`."""
        if self._jobs.get(owner, 0) >= self.max_jobs_per_user:
            raise TooManyJobs(self.max_jobs_per_user)
        self._jobs[owner] = self._jobs.get(owner, 0) + 1

    def force_admit(self, owner: Hashable) -> None:
        """Count a job without the limit (jobs resumed after a restart)."""
        self._jobs[owner] = self._jobs.get(owner, 0) + 1

    def finish(self, owner: Hashable) -> None:
        left = self._jobs.get(owner, 0) - 1
        if left > 0:
            self._jobs[owner] = left
        else:
            self._jobs.pop(owner, None)

    def jobs_of(self, owner: Hashable) -> int:
        return self._jobs.get(owner, 0)

    # -- call slots -----------------------------------------------------------------------

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @asynccontextmanager
    async def slot(
        self, owner: Hashable, on_position: PositionCallback | None = None
    ) -> AsyncIterator[None]:
        """Wait for a fair turn, hold one of the `max_concurrent` slots while inside."""
        await self._acquire(owner, on_position)
        try:
            yield
        finally:
            self._running -= 1
            self._grant()

    async def _acquire(self, owner: Hashable, on_position: PositionCallback | None) -> None:
        if self._running < self.max_concurrent and not self._queues:
            self._running += 1
            return
        waiter = _Waiter(owner, asyncio.get_running_loop().create_future(), on_position)
        self._queues.setdefault(owner, deque()).append(waiter)
        self._report_positions()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # Granted and cancelled at the same moment: give the slot back.
                self._running -= 1
                self._grant()
            else:
                self._remove(waiter)
            raise

    def _grant(self) -> None:
        while self._running < self.max_concurrent and self._queues:
            owner, queue = next(iter(self._queues.items()))
            waiter = queue.popleft()
            # Round-robin: this member goes to the back of the line.
            del self._queues[owner]
            if queue:
                self._queues[owner] = queue
            if waiter.future.done():
                continue
            self._running += 1
            waiter.future.set_result(None)
        self._report_positions()

    def _remove(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.owner)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return
        if not queue:
            del self._queues[waiter.owner]
        self._report_positions()

    def _report_positions(self) -> None:
        """Recount positions soon: once for every grant, join and leave in the interval.

        Counted on every grant, an overload fed itself: with a thousand calls waiting, each
        of a hundred grants a second told a thousand waiters their new place.
        """
        if self._positions_due is None:
            loop = asyncio.get_running_loop()
            self._positions_due = loop.call_later(self.position_interval, self._count_positions)

    def _count_positions(self) -> None:
        """Tell each waiter its place in line (1 = next), only when it changed.

        Waiters are walked in the order `_grant` would serve them: the head of every queue
        in ring order, then the second of every queue, and so on. One pass: counting, for
        each waiter, the waiters ahead of it in every other queue took most of the event
        loop's time with 700 calls waiting (bench/load.py).
        """
        self._positions_due = None
        cursors = [iter(queue) for queue in self._queues.values()]
        position = 0
        while cursors:
            deeper = []
            for cursor in cursors:
                waiter = next(cursor, None)
                if waiter is None:
                    continue
                position += 1
                deeper.append(cursor)
                if position != waiter.last_position:
                    waiter.last_position = position
                    if waiter.on_position is not None:
                        waiter.on_position(position)
            cursors = deeper
