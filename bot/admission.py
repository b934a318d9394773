"""Admission control: a budget for the bytes that turns hold in memory at once.

Without a bound, an overload grows memory until the process is killed: 100 turns a second
with one 10 MB photo each reached 14 GB and was OOM-killed (specs/performance.md section 6,
goal G8). With one, an overload makes new turns wait before they download anything, while
the turns already admitted run at full speed.

A turn asks for its bytes before it downloads or prepares its reference images and holds
them until its provider calls are done:

    async with budget.hold(turn_bytes(declared, calls=count)) as grant:
        images = await read_references(...)        # at most `declared` raw bytes
        grant.shrink_to(turn_bytes(prepared, calls=count))
        await service.run(...)                     # request bodies, provider calls

The size starts from what Discord declares (checked against the actual bytes by the capped
download) and is adjusted down once the images are prepared: a 10 MB photo shrinks to a
few hundred kB. A grant never grows, so turns cannot deadlock waiting on each other.

The budget is FIFO-fair: a turn waits behind every turn that asked before it, so a stream
of small turns cannot starve a large one. A request larger than the whole budget is cut
to the budget (it then runs alone). A turn without reference images asks for nothing and
never waits.

CPU work needs no second budget: Pillow work runs on the two-thread pool of `bot.images` and
JSON/base64 on the single codec worker (`bot.codec`), so at most three threads compete with
the event loop; the work queued for them belongs to admitted turns, so this budget bounds
it too, together with the 50-megapixel and 10 MB limits on every image.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.models import ImageData

DEFAULT_MAX_BYTES_IN_FLIGHT = 256 * 1024 * 1024
# A request body carries each reference image as base64: 4 bytes for every 3.
BASE64_GROWTH = 4 / 3


def turn_bytes(reference_bytes: int, *, calls: int = 1) -> int:
    """The peak a turn's reference images cost: the images themselves, plus one base64
    copy of them in the request body of each provider call."""
    if reference_bytes <= 0:
        return 0
    return reference_bytes + math.ceil(reference_bytes * BASE64_GROWTH) * max(1, calls)


def size_of(images: Iterable[ImageData]) -> int:
    return sum(len(image.data) for image in images)


@dataclass(eq=False)
class _Waiter:
    size: int
    future: asyncio.Future[None] = field(repr=False)


class Grant:
    """Bytes held from a ByteBudget until `release()` (idempotent)."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def shrink_to(self, size: int) -> None:
        """Give back what the turn turned out not to need; asking for more does nothing."""
        size = max(0, size)
        if size < self._size:
            freed, self._size = self._size - size, size
            self._budget._give_back(freed)

    def release(self) -> None:
        self.shrink_to(0)


class ByteBudget:
    """At most `capacity` bytes granted at once; waiting turns are served in arrival order."""

    def __init__(self, capacity: int = DEFAULT_MAX_BYTES_IN_FLIGHT) -> None:
        if capacity <= 0:
            raise ValueError("a byte budget needs a positive capacity")
        self.capacity = capacity
        self._in_use = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def available(self) -> int:
        return self.capacity - self._in_use

    @property
    def waiting(self) -> int:
        """Turns waiting for bytes."""
        return len(self._waiters)

    async def acquire(self, size: int) -> Grant:
        """Wait for `size` bytes (at most the whole budget) behind every earlier request."""
        size = min(max(0, size), self.capacity)
        if size == 0 or (not self._waiters and self._in_use + size <= self.capacity):
            self._in_use += size
            return Grant(self, size)
        waiter = _Waiter(size, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._give_back(size)  # granted as it was cancelled: hand it on
            else:
                self._waiters.remove(waiter)
                self._wake()  # it may have been the head that held the others back
            raise
        return Grant(self, size)

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[Grant]:
        grant = await self.acquire(size)
        try:
            yield grant
        finally:
            grant.release()

    def _give_back(self, size: int) -> None:
        self._in_use -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use + self._waiters[0].size <= self.capacity:
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue
            self._in_use += waiter.size
            waiter.future.set_result(None)
