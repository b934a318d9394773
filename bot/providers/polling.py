"""Waiting for an asynchronous upstream task: published poll schedules and the poll loop.

GMI, APIMart and LinkModel hand back a task id and expect the client to ask again. Each
publishes (or implies) how often to ask and when to give up (specs/providers.md):

- LinkModel [V]: nothing for the first 10 s, then every 3 s until 1 min, every 6 s until
  3 min, every 10 s until 15 min; then time out.
- APIMart [V]: every 2 s, for at most 10 min or 120 checks, whichever comes first.
- GMI: the call is normally synchronous and polling is only a fallback. No schedule is
  published [I]; we ask every 1 s for 10 s, then every 2 s up to 10 min.

A schedule is data: `offsets()` lists when checks happen, counted from the start of polling,
so it can be read and tested without a clock. `scaled()` shrinks it for tests.

The status vocabulary every route shares also lives here: upstream status strings vary by
route and by client generation, so they are folded into four states in one place.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from bot.errors import ProviderTimeout

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """When to check a task: wait `initial_delay`, then each step's interval until its end.

    `steps` are `(until_seconds, interval_seconds)` pairs in increasing order; the interval
    of the first step whose end lies beyond the current time applies. Polling stops at
    `deadline` seconds or after `max_checks` checks, whichever comes first.
    """

    initial_delay: float
    steps: tuple[tuple[float, float], ...]
    deadline: float
    max_checks: int | None = None

    def __post_init__(self) -> None:
        if not self.steps or any(interval <= 0 for _, interval in self.steps):
            raise ValueError("a poll schedule needs steps with positive intervals")

    @classmethod
    def linkmodel(cls) -> PollSchedule:
        return cls(10.0, ((60.0, 3.0), (180.0, 6.0), (900.0, 10.0)), deadline=900.0)

    @classmethod
    def apimart(cls) -> PollSchedule:
        return cls(2.0, ((600.0, 2.0),), deadline=600.0, max_checks=120)

    @classmethod
    def gmi(cls) -> PollSchedule:
        return cls(1.0, ((10.0, 1.0), (600.0, 2.0)), deadline=600.0)

    @classmethod
    def fixed(cls, interval: float, deadline: float, *, initial_delay: float = 0.0) -> PollSchedule:
        """A flat schedule, e.g. `PollSchedule.fixed(0.01, 2.0)` in tests."""
        return cls(initial_delay, ((deadline, interval),), deadline=deadline)

    def scaled(self, factor: float) -> PollSchedule:
        """The same shape with every duration multiplied by `factor` (checks unchanged)."""
        return PollSchedule(
            self.initial_delay * factor,
            tuple((until * factor, interval * factor) for until, interval in self.steps),
            deadline=self.deadline * factor,
            max_checks=self.max_checks,
        )

    def interval_at(self, elapsed: float) -> float:
        for until, interval in self.steps:
            if elapsed < until:
                return interval
        return self.steps[-1][1]

    def offsets(self) -> Iterator[float]:
        """Seconds after the start of polling at which each check is due."""
        at, count = self.initial_delay, 0
        while at <= self.deadline and (self.max_checks is None or count < self.max_checks):
            yield at
            count += 1
            at += self.interval_at(at)


class TaskState(enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Lower-cased upstream statuses. Verified values per route are in specs/providers.md; the
# synonyms are what defensive third-party clients accept [S].
_STATES: dict[str, TaskState] = {
    **dict.fromkeys(
        ("submitted", "queued", "pending", "dispatched", "processing", "running",
         "in_progress", "in-progress", "started", "created"),
        TaskState.PENDING,
    ),
    **dict.fromkeys(
        ("success", "succeeded", "completed", "complete", "finished", "done"),
        TaskState.SUCCEEDED,
    ),
    **dict.fromkeys(("failed", "failure", "error", "errored"), TaskState.FAILED),
    **dict.fromkeys(("cancelled", "canceled", "cancel"), TaskState.CANCELLED),
}


def classify_status(status: str) -> TaskState | None:
    """Fold an upstream status ("Success", "in_progress", "canceled"...) into a TaskState.

    Returns None for a status nobody has seen, which callers treat as a bad response
    rather than spinning until the deadline on a state that may be terminal.
    """
    return _STATES.get(status.strip().lower())


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """What one submit or status answer said about a task, in route-neutral terms."""

    task_id: str
    state: TaskState
    status: str
    urls: tuple[str, ...] = ()
    message: str = ""
    cost_usd: float | None = None

    @property
    def done(self) -> bool:
        return self.state is not TaskState.PENDING


async def poll_task(
    query: Callable[[], Awaitable[TaskSnapshot]],
    schedule: PollSchedule,
    *,
    provider: str,
    task_id: str,
) -> TaskSnapshot:
    """Call `query` on `schedule` until the task is done; ProviderTimeout when it runs out."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    last, checks = "submitted", 0
    for offset in schedule.offsets():
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif loop.time() - start > schedule.deadline:
            break
        snapshot = await query()
        checks += 1
        if snapshot.done:
            return snapshot
        if snapshot.status != last:
            log.debug("%s: task %s is %s", provider, task_id, snapshot.status)
            last = snapshot.status
    waited = loop.time() - start
    raise ProviderTimeout(
        f"task {task_id} still {last} after {waited:.1f}s ({checks} checks)", provider=provider
    )
