"""What the service and the Discord glue exchange: the turn asked for, how its progress is
shown, and what came of it. Plain data and one protocol; nothing here imports discord."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from bot.models import ImageData, Usage
from bot.storage.ledger import Balance


@dataclass(frozen=True, slots=True)
class TurnSpec:
    """One turn as a member asked for it, built by the Discord glue."""

    key: str
    kind: Literal["imagine", "edit"]
    guild_id: int | None
    channel_id: int
    user_id: int
    prompt: str
    aspect_ratio: str | None = None
    count: int = 1
    references: tuple[ImageData, ...] = ()
    parent_turn_id: int | None = None
    # Edit "the thread's latest image", resolved when the job runs (not when it queues),
    # so two messages in one thread build on each other.
    parent_thread_id: int | None = None
    thread_id: int | None = None
    reply_to_id: int | None = None
    start_thread: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    job_key: str
    turn_id: int
    user_id: int
    prompt: str
    images: tuple[ImageData, ...]
    caption: str | None
    usage: Usage
    cost_micro_usd: int
    balance: Balance
    warnings: tuple[str, ...] = ()
    thread_id: int | None = None
    reply_to_id: int | None = None
    start_thread: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: int
    thread_id: int | None = None  # the thread the result was posted in
    started_thread_id: int | None = None  # a new thread started on the result


class Reporter(Protocol):
    """How a job shows itself in Discord; implemented by the glue."""

    def queued(self, position: int) -> None:
        """Waiting for a provider slot, `position` in line (1 = next); may be cancelled."""
        ...

    async def started(self) -> None:
        """The first provider call started; the job can no longer be cancelled."""
        ...

    async def deliver(self, outcome: Outcome) -> Delivery: ...

    async def refuse(self, message: str) -> None: ...

    async def cancelled(self) -> None:
        """The owner cancelled the job: stop showing progress (the Cancel click says so)."""
        ...
