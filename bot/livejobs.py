"""The jobs alive in this process, between admission and their end.

A job is *waiting* until its first provider call starts: its owner may cancel it then, and
while Peel drains for a restart it is held back (its row stays `queued` for the next start).
Once a call starts the job is *started*: it cannot be cancelled, and a drain waits for it
to be delivered or to fail.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class CancelResult(enum.Enum):
    CANCELLED = "cancelled"
    NOT_OWNER = "not_owner"
    STARTED = "started"  # its provider call is running (or about to)
    FINISHED = "finished"  # done, failed, cancelled already, or unknown


@dataclass(eq=False, slots=True)
class Waiting:
    """A job whose first provider call has not started."""

    key: str
    user_id: int
    task: asyncio.Task[Any]
    cancel_requested: bool = False
    handled: asyncio.Event = field(default_factory=asyncio.Event)


class LiveJobs:
    def __init__(self) -> None:
        self.accepting = True
        self._open = asyncio.Event()  # cleared while draining
        self._open.set()
        self._waiting: dict[str, Waiting] = {}
        self._started: set[str] = set()
        self._quiet = asyncio.Event()  # set when no started job is left
        self._quiet.set()

    def watch(self, key: str, user_id: int, task: asyncio.Task[Any]) -> Waiting:
        """Track a job's task from admission; it can be cancelled until `begin`."""
        waiting = Waiting(key, user_id, task)
        self._waiting[key] = waiting
        return waiting

    def __contains__(self, key: object) -> bool:
        return key in self._waiting or key in self._started

    def waiting(self, key: str) -> Waiting | None:
        return self._waiting.get(key)

    def begin(self, key: str) -> None:
        """The job's first call starts: no longer cancellable, and a drain waits for it."""
        self._waiting.pop(key, None)
        self._started.add(key)
        self._quiet.clear()

    def end(self, waiting: Waiting) -> None:
        if self._waiting.get(waiting.key) is waiting:
            del self._waiting[waiting.key]
        waiting.handled.set()
        self._started.discard(waiting.key)
        if not self._started:
            self._quiet.set()

    async def cancel(self, waiting: Waiting) -> bool:
        """Cancel a waiting job's task and return once the job has handled it: True if it
        was cancelled, False if it ended on its own first (e.g. it had just failed)."""
        if not waiting.cancel_requested:
            waiting.cancel_requested = True
            waiting.task.cancel()
        await waiting.handled.wait()
        return waiting.task.cancelled()

    @property
    def started(self) -> int:
        return len(self._started)

    def stop_accepting(self) -> None:
        """New turns are refused; waiting jobs are held until the process ends."""
        self.accepting = False
        self._open.clear()

    async def hold(self) -> None:
        """Wait while draining (in practice until shutdown cancels the waiter)."""
        await self._open.wait()

    async def wait_quiet(self) -> None:
        """Return once no started job is left."""
        await self._quiet.wait()


class CallProgress:
    """Where a job's calls stand: its best place in line, until the first call starts."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.started = False
        # The write that marks the job's row `running`, made while its first call goes out.
        self.marking: asyncio.Task[object] | None = None
        self._report = report
        self._positions: dict[int, int] = {}

    def tracker(self, index: int) -> Callable[[int], None]:
        """The position callback for call number `index` of the job."""
        def update(position: int) -> None:
            self._positions[index] = position
            if not self.started:
                self._report(min(self._positions.values()))

        return update
