"""The command tree with Peel's one app-command error handler."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.errors import user_message_for
from bot.render import NO_MENTIONS

log = logging.getLogger(__name__)


class PeelTree(app_commands.CommandTree):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.MissingPermissions):
            text = "You need the Manage Server permission to do that."
        elif isinstance(error, app_commands.CheckFailure):
            text = "You can't use this command here."
        elif isinstance(error, app_commands.TransformerError):
            text = f"That value can't be used: {error.value!r}."
        else:
            text = user_message_for(original)
            log.error("command %s failed", interaction.command and interaction.command.name,
                      exc_info=original)
        await send_ephemeral(interaction, f"⚠️ {text}")


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Reply privately whether or not the interaction was answered yet."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
    except discord.HTTPException as exc:
        log.warning("could not send an error message: %s", exc.status)
