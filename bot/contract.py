"""What the service and the Discord glue exchange: the turn asked for, how its progress is
shown, and what came of it. Plain data and one protocol; nothing here imports discord."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.errors import InvalidRequest, TooManyImages
from bot.models import ASPECT_RATIOS, MAX_PROMPT_CHARS, ImageData, Usage
from bot.storage.ledger import Balance

MAX_COUNT = 4  # images per turn


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
    # The message already showing the turn's progress (an interaction's deferred response),
    # stored with the job so a restart can correct it.
    status_message_id: int | None = None


def validate_turn(spec: TurnSpec, *, max_reference_images: int) -> None:
    """Refuse what no provider call could satisfy (raises a UserError)."""
    prompt = spec.prompt.strip()
    if not prompt:
        raise InvalidRequest("Write what you want to see: the prompt is empty.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"The prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}."
        )
    if spec.aspect_ratio is not None and spec.aspect_ratio not in ASPECT_RATIOS:
        raise InvalidRequest(f"`{spec.aspect_ratio}` is not a supported aspect ratio.")
    if not 1 <= spec.count <= MAX_COUNT:
        raise InvalidRequest(f"`count` must be between 1 and {MAX_COUNT}.")
    has_parent = spec.parent_turn_id is not None or spec.parent_thread_id is not None
    total = len(spec.references) + int(has_parent)
    if total > max_reference_images:
        raise TooManyImages(
            f"This image service takes at most {max_reference_images} images per "
            f"turn (the image being edited counts); this turn has {total}."
        )


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
    # Starts the conversation thread on the result and returns its id (None if Discord
    # refused). Run after the job is done: see ImageService.record_delivery.
    start_thread: Callable[[], Awaitable[int | None]] | None = None


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
