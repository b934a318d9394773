"""Starting turns from Discord: interactions and messages become TurnSpecs for the service.

Every path acknowledges first (Discord allows 3 s; the defer goes out before any download,
database or CPU work), then reads attachments, then hands the turn to the service.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Literal

import discord

from bot.admission import size_of, turn_bytes
from bot.attachments import read_references
from bot.delivery import ChannelReporter, InteractionReporter
from bot.errors import UserError
from bot.models import ImageData
from bot.service import Delivery, Outcome, Reporter, TurnSpec

if TYPE_CHECKING:
    from bot.client import PeelBot

log = logging.getLogger(__name__)


def starts_thread(channel: object) -> bool:
    """Results in a server text channel get a thread; in a thread or DM they don't."""
    return isinstance(channel, discord.TextChannel)


def thread_of(channel: object) -> int | None:
    return channel.id if isinstance(channel, discord.Thread) else None


class ArrivalOrder:
    """Keeps the edit messages of each thread in the order members wrote them.

    A thread edit works on the thread's latest image, which the service picks when the job
    takes its place in the thread's lane. Between a message's arrival and that moment lie
    downloads and database writes of varying length, so a quick second message could
    overtake the first and edit the image the first was meant to change. Each message
    takes a ticket when it arrives (before its handler's first await, so tickets follow
    gateway order) and waits for every earlier ticket of its channel before it joins the lane.
    """

    def __init__(self) -> None:
        self._last: dict[int, asyncio.Future[None]] = {}

    def enter(self, channel_id: int) -> Ticket:
        ahead = self._last.get(channel_id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[channel_id] = mine
        return Ticket(self, channel_id, ahead, mine)

    def _forget(self, channel_id: int, future: asyncio.Future[None]) -> None:
        if self._last.get(channel_id) is future:
            del self._last[channel_id]


class Ticket:
    """One message's place in its channel's arrival order."""

    def __init__(
        self,
        order: ArrivalOrder,
        channel_id: int,
        ahead: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        self._order = order
        self._channel_id = channel_id
        self._ahead = ahead
        self._mine = mine
        self._released = False

    async def wait(self) -> None:
        """Until every earlier message of the channel has joined its lane (or given up)."""
        if self._ahead is not None:
            await asyncio.shield(self._ahead)

    def release(self) -> None:
        """Let the next message go once this one and all before it are out of the way."""
        if self._released:
            return
        self._released = True
        if self._ahead is None or self._ahead.done():
            self._open()
        else:
            self._ahead.add_done_callback(lambda _: self._open())

    def _open(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        self._order._forget(self._channel_id, self._mine)


class _LaneReporter:
    """Calls `joined` the first time the service reports the job: queued or started happen
    only once the job holds its lane, and a refusal or result means it needs no place."""

    def __init__(self, inner: Reporter, joined: Callable[[], None]) -> None:
        self._inner = inner
        self._joined = joined

    def queued(self, position: int) -> None:
        self._joined()
        self._inner.queued(position)

    async def started(self) -> None:
        self._joined()
        await self._inner.started()

    async def deliver(self, outcome: Outcome) -> Delivery:
        self._joined()
        return await self._inner.deliver(outcome)

    async def refuse(self, message: str) -> None:
        self._joined()
        await self._inner.refuse(message)

    async def cancelled(self) -> None:
        self._joined()
        await self._inner.cancelled()


async def run_interaction_turn(
    interaction: discord.Interaction,
    *,
    kind: Literal["imagine", "edit"],
    prompt: str,
    aspect_ratio: str | None = None,
    count: int = 1,
    attachments: Sequence[discord.Attachment] = (),
    references: Sequence[ImageData] = (),
    parent_turn_id: int | None = None,
    status_message_id: int | None = None,
) -> None:
    """The whole life of a slash-command, button or modal turn. A caller that deferred
    already passes the `status_message_id` its `defer_status` returned."""
    from cogs.buttons import result_view

    bot: PeelBot = interaction.client  # type: ignore[assignment]
    if not interaction.response.is_done():
        status_message_id = await defer_status(interaction)
    reporter = InteractionReporter(interaction, view_factory=result_view,
                                   placeholder_id=status_message_id)
    if not await _prechecked(bot, reporter, str(interaction.id), interaction.guild_id,
                             interaction.user.id):
        return
    has_parent = parent_turn_id is not None
    # Bytes in flight are bounded: under overload the turn waits here, after the ack.
    declared = sum(a.size for a in attachments) + size_of(references)
    async with bot.service.admission.hold(turn_bytes(declared, calls=count)) as grant:
        try:
            read, warnings = await read_references(
                bot.session, list(attachments), already=len(references) + int(has_parent)
            )
        except UserError as exc:
            await reporter.refuse(exc.user_message)
            return
        grant.shrink_to(turn_bytes(size_of((*references, *read)), calls=count))
        channel = interaction.channel
        spec = TurnSpec(
            key=str(interaction.id), kind=kind, guild_id=interaction.guild_id,
            channel_id=interaction.channel_id or 0, user_id=interaction.user.id, prompt=prompt,
            aspect_ratio=aspect_ratio, count=count, references=(*references, *read),
            parent_turn_id=parent_turn_id, thread_id=thread_of(channel),
            start_thread=starts_thread(channel), warnings=tuple(warnings),
            status_message_id=status_message_id,
        )
        await bot.service.run(spec, reporter)


async def defer_status(interaction: discord.Interaction) -> int | None:
    """Acknowledge with a public "thinking" placeholder, which then shows the job's progress;
    returns its message id (the callback response carries it: no extra request)."""
    callback = await interaction.response.defer(thinking=True)
    return callback.message_id if callback is not None else None


async def run_message_turn(
    bot: PeelBot,
    message: discord.Message,
    *,
    kind: Literal["imagine", "edit"],
    prompt: str,
    parent_turn_id: int | None = None,
    parent_thread_id: int | None = None,
    thread_id: int | None = None,
    ticket: Ticket | None = None,
) -> None:
    """A turn asked for by a plain message: a thread edit, a reply edit or a mention.

    `thread_id` names the conversation thread the message is in when discord.py has not
    cached it (an archived thread, or one from before a restart). With a `ticket`, the
    turn joins the service only after the messages written before it.
    """
    # The job row exists before any status is shown; its status message is stored with it.
    reporter = message_reporter(message, on_status=functools.partial(
        bot.service.jobs.set_status_message, str(message.id)))
    if ticket is not None:
        reporter = _LaneReporter(reporter, ticket.release)
    if not await _prechecked(bot, reporter, str(message.id),
                             message.guild.id if message.guild else None, message.author.id):
        return
    has_parent = parent_turn_id is not None or parent_thread_id is not None
    declared = sum(a.size for a in message.attachments)
    async with bot.service.admission.hold(turn_bytes(declared)):
        try:
            read, warnings = await read_references(
                bot.session, list(message.attachments), already=int(has_parent)
            )
        except UserError as exc:
            await reporter.refuse(exc.user_message)
            return
    if ticket is not None:
        # Holding no bytes: an earlier message of the thread may be waiting for some.
        await ticket.wait()
    spec = TurnSpec(
        key=str(message.id), kind=kind, guild_id=message.guild.id if message.guild else None,
        channel_id=message.channel.id, user_id=message.author.id, prompt=prompt,
        references=tuple(read), parent_turn_id=parent_turn_id,
        parent_thread_id=parent_thread_id, thread_id=thread_id or thread_of(message.channel),
        reply_to_id=message.id, start_thread=parent_thread_id is None
        and parent_turn_id is None and starts_thread(message.channel),
        warnings=tuple(warnings),
    )
    async with bot.service.admission.hold(turn_bytes(size_of(read))):
        await bot.service.run(spec, reporter)


async def _prechecked(
    bot: PeelBot, reporter: Reporter, key: str, guild_id: int | None, user_id: int
) -> bool:
    """Refuse a member over the job limit (or during a restart) before any download."""
    try:
        bot.service.precheck(key, guild_id, user_id)
    except UserError as exc:
        await reporter.refuse(exc.user_message)
        return False
    return True


def message_reporter(
    message: discord.Message, *, on_status: Callable[[int], Awaitable[None]] | None = None
) -> Reporter:
    """Progress, result and refusals as replies to the member's message."""
    from cogs.buttons import result_view

    return ChannelReporter(
        message.channel, owner_id=message.author.id, view_factory=result_view,
        reply_to=message, on_status=on_status,
    )
