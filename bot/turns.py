"""Starting turns from Discord: interactions and messages become TurnSpecs for the service.

Every path acknowledges first (Discord allows 3 s; the defer goes out before any download,
database or CPU work), then reads attachments, then hands the turn to the service.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import discord

from bot.attachments import read_references
from bot.delivery import ChannelReporter, InteractionReporter
from bot.errors import UserError
from bot.models import ImageData
from bot.service import TurnSpec

if TYPE_CHECKING:
    from bot.client import PeelBot

log = logging.getLogger(__name__)


def starts_thread(channel: object) -> bool:
    """Results in a server text channel get a thread; in a thread or DM they don't."""
    return isinstance(channel, discord.TextChannel)


def thread_of(channel: object) -> int | None:
    return channel.id if isinstance(channel, discord.Thread) else None


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
) -> None:
    """The whole life of a slash-command, button or modal turn."""
    from cogs.buttons import result_view

    bot: PeelBot = interaction.client  # type: ignore[assignment]
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    reporter = InteractionReporter(interaction, view_factory=result_view)
    has_parent = parent_turn_id is not None
    try:
        read, warnings = await read_references(
            bot.session, list(attachments), already=len(references) + int(has_parent)
        )
    except UserError as exc:
        await reporter.refuse(exc.user_message)
        return
    channel = interaction.channel
    spec = TurnSpec(
        key=str(interaction.id), kind=kind, guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0, user_id=interaction.user.id, prompt=prompt,
        aspect_ratio=aspect_ratio, count=count, references=(*references, *read),
        parent_turn_id=parent_turn_id, thread_id=thread_of(channel),
        start_thread=starts_thread(channel), warnings=tuple(warnings),
    )
    await bot.service.run(spec, reporter)


async def run_message_turn(
    bot: PeelBot,
    message: discord.Message,
    *,
    kind: Literal["imagine", "edit"],
    prompt: str,
    parent_turn_id: int | None = None,
    parent_thread_id: int | None = None,
) -> None:
    """A turn asked for by a plain message: a thread edit, a reply edit or a mention."""
    from cogs.buttons import result_view

    reporter = ChannelReporter(
        message.channel, owner_id=message.author.id, view_factory=result_view,
        reply_to=message,
    )
    has_parent = parent_turn_id is not None or parent_thread_id is not None
    try:
        read, warnings = await read_references(
            bot.session, list(message.attachments), already=int(has_parent)
        )
    except UserError as exc:
        await reporter.refuse(exc.user_message)
        return
    spec = TurnSpec(
        key=str(message.id), kind=kind, guild_id=message.guild.id if message.guild else None,
        channel_id=message.channel.id, user_id=message.author.id, prompt=prompt,
        references=tuple(read), parent_turn_id=parent_turn_id,
        parent_thread_id=parent_thread_id, thread_id=thread_of(message.channel),
        reply_to_id=message.id, start_thread=parent_thread_id is None
        and parent_turn_id is None and starts_thread(message.channel),
        warnings=tuple(warnings),
    )
    await bot.service.run(spec, reporter)
