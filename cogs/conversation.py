"""Edit conversations carried by plain messages: thread messages, replies, mentions.

- A message by the conversation's owner in a result thread edits the thread's latest image.
- A reply to any result message of the bot edits that image (a branch), wherever it is.
- A message that mentions the bot starts a new conversation.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.turns import run_message_turn

if TYPE_CHECKING:
    from bot.client import PeelBot

log = logging.getLogger(__name__)


def strip_mentions(content: str, bot_id: int) -> str:
    return re.sub(rf"<@!?{bot_id}>", "", content).strip()


class Conversation(commands.Cog):
    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.bot.user is None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        prompt = strip_mentions(message.content, self.bot.user.id)
        conversations = self.bot.service.conversations
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            turn = await conversations.by_message(reference.message_id)
            if turn is not None:
                if prompt:
                    await run_message_turn(self.bot, message, kind="edit", prompt=prompt,
                                           parent_turn_id=turn.id)
                return
        if isinstance(message.channel, discord.Thread):
            thread = await conversations.thread(message.channel.id)
            if thread is not None:
                if message.author.id == thread.owner_id and prompt:
                    await run_message_turn(self.bot, message, kind="edit", prompt=prompt,
                                           parent_thread_id=thread.thread_id)
                return
        if self.bot.user in message.mentions and prompt:
            await run_message_turn(self.bot, message, kind="imagine", prompt=prompt)


async def setup(bot: PeelBot) -> None:
    await bot.add_cog(Conversation(bot))
