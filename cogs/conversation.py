"""Edit conversations carried by plain messages: thread messages, replies, mentions.

- A message by the conversation's owner in a result thread edits the thread's latest image.
- A reply to any result message of the bot edits that image (a branch), wherever it is.
- A message that mentions the bot starts a new conversation.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.errors import TooManyJobs
from bot.storage.conversations import ThreadInfo
from bot.turns import ArrivalOrder, Ticket, message_reporter, run_message_turn

if TYPE_CHECKING:
    from bot.client import PeelBot

log = logging.getLogger(__name__)


def strip_mentions(content: str, bot_id: int) -> str:
    return re.sub(rf"<@!?{bot_id}>", "", content).strip()


class Conversation(commands.Cog):
    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        self.arrivals = ArrivalOrder()
        # Thread edits between arrival and their end, per thread: the owner's queue there.
        self.in_flight: Counter[int] = Counter()

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.bot.user is None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        # Taken before the first await, so tickets follow the order members wrote in.
        # Anything but a plain text channel may be a conversation thread: an archived one,
        # or one from before a restart, reaches us as a bare PartialMessageable.
        ticket = None
        if not isinstance(message.channel, discord.TextChannel):
            ticket = self.arrivals.enter(message.channel.id)
        try:
            await self._route(message, self.bot.user.id, ticket)
        finally:
            if ticket is not None:
                ticket.release()

    async def _route(self, message: discord.Message, bot_id: int, ticket: Ticket | None) -> None:
        prompt = strip_mentions(message.content, bot_id)
        conversations = self.bot.service.conversations
        # Threads are recognised by id from the database, not discord.py's cache.
        thread = await conversations.thread(message.channel.id) if ticket else None
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            turn = await conversations.by_message(reference.message_id)
            if turn is not None:
                if ticket is not None:
                    ticket.release()  # a branch names its image; nothing to wait for
                if prompt:
                    await run_message_turn(
                        self.bot, message, kind="edit", prompt=prompt, parent_turn_id=turn.id,
                        thread_id=thread.thread_id if thread else None,
                    )
                return
        if thread is not None:
            if message.author.id == thread.owner_id and prompt:
                await self._thread_edit(message, prompt, thread, ticket)
            return
        if ticket is not None:
            ticket.release()
        # Written mentions only: a reply that pings the bot puts it in `mentions` too,
        # and "thanks" in reply to a refusal is not a request for an image.
        if bot_id in message.raw_mentions and prompt:
            await run_message_turn(self.bot, message, kind="imagine", prompt=prompt)

    async def _thread_edit(
        self, message: discord.Message, prompt: str, thread: ThreadInfo, ticket: Ticket | None
    ) -> None:
        # Waiting messages are queued jobs too: hold them to the per-member limit.
        limit = self.bot.settings.max_jobs_per_user
        if self.in_flight[thread.thread_id] >= limit:
            await message_reporter(message).refuse(TooManyJobs(limit).user_message)
            return
        self.in_flight[thread.thread_id] += 1
        try:
            await run_message_turn(
                self.bot, message, kind="edit", prompt=prompt,
                parent_thread_id=thread.thread_id, thread_id=thread.thread_id, ticket=ticket,
            )
        finally:
            self.in_flight[thread.thread_id] -= 1
            if self.in_flight[thread.thread_id] <= 0:
                del self.in_flight[thread.thread_id]


async def setup(bot: PeelBot) -> None:
    await bot.add_cog(Conversation(bot))
