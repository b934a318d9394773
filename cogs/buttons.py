"""Buttons that keep working after a restart: Reroll, Edit and Delete on results, and
Cancel on a queued job's status.

Their state lives in the custom id (the turn id or job key) and the database, and they
are registered as DynamicItems, so no in-memory View has to survive.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

import discord
from discord.ext import commands

from bot.delivery import CANCELLED_TEXT
from bot.render import NO_MENTIONS
from bot.service import CancelResult, Outcome
from bot.tree import send_ephemeral
from bot.turns import defer_status, run_interaction_turn
from cogs.edit import EditModal

if TYPE_CHECKING:
    from bot.client import PeelBot
    from bot.storage.conversations import Turn

log = logging.getLogger(__name__)


async def _owned_turn(interaction: discord.Interaction, turn_id: int) -> Turn | None:
    bot: PeelBot = interaction.client  # type: ignore[assignment]
    turn = await bot.service.conversations.get(turn_id)
    if turn is None:
        await send_ephemeral(interaction, "⚠️ Peel no longer has this image.")
        return None
    if turn.user_id != interaction.user.id:
        await send_ephemeral(interaction, "⚠️ Only the member who made this image can do that.")
        return None
    return turn


class PeelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"peel:(?P<action>[a-z]+):(?P<id>\d+)"
):
    """A button whose whole state is `peel:<action>:<id>`; subclasses set how it looks."""

    action: ClassVar[str]
    label: ClassVar[str]
    emoji: ClassVar[str | None] = None
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def __init__(self, ident: int | str) -> None:
        super().__init__(discord.ui.Button(
            label=self.label, emoji=self.emoji, style=self.style,
            custom_id=f"peel:{self.action}:{ident}",
        ))
        self.ident = str(ident)

    @property
    def turn_id(self) -> int:
        return int(self.ident)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> PeelButton:
        return cls(match["id"])


class RerollButton(PeelButton, template=r"peel:reroll:(?P<id>\d+)"):
    action, label, emoji = "reroll", "Reroll", "🎲"

    async def callback(self, interaction: discord.Interaction) -> None:
        turn = await _owned_turn(interaction, self.turn_id)
        if turn is None:
            return
        bot: PeelBot = interaction.client  # type: ignore[assignment]
        status_message_id = await defer_status(interaction)
        job = await bot.service.jobs.get(turn.job_key)
        references = await bot.service.blobs.get_many(list(job.reference_shas)) if job else []
        await run_interaction_turn(
            interaction, kind=job.kind if job else "imagine", prompt=turn.prompt,
            aspect_ratio=turn.aspect_ratio, references=references,
            parent_turn_id=turn.parent_id, status_message_id=status_message_id,
        )


class EditButton(PeelButton, template=r"peel:edit:(?P<id>\d+)"):
    action, label, emoji = "edit", "Edit", "✏️"

    async def callback(self, interaction: discord.Interaction) -> None:
        turn = await _owned_turn(interaction, self.turn_id)
        if turn is not None:
            await interaction.response.send_modal(EditModal(parent_turn_id=turn.id))


class DeleteButton(PeelButton, template=r"peel:delete:(?P<id>\d+)"):
    action, label, emoji = "delete", "Delete", "🗑️"
    style = discord.ButtonStyle.danger

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: PeelBot = interaction.client  # type: ignore[assignment]
        turn = await bot.service.conversations.get(self.turn_id)
        moderator = interaction.permissions.manage_messages
        if not moderator and (turn is None or turn.user_id != interaction.user.id):
            await send_ephemeral(
                interaction, "⚠️ Only the member who made this image or a moderator with "
                "Manage Messages can delete it."
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.message is not None:
            try:
                await interaction.message.delete()
            except discord.HTTPException as exc:
                log.warning("could not delete result %s: %s", interaction.message.id, exc.status)
                await interaction.followup.send("⚠️ Discord would not let Peel delete it.",
                                                ephemeral=True, allowed_mentions=NO_MENTIONS)
                return
        await interaction.followup.send("🗑️ Deleted.", ephemeral=True,
                                        allowed_mentions=NO_MENTIONS)


CANCEL_REFUSALS = {
    CancelResult.NOT_OWNER: "⚠️ Only the member who asked for this image can cancel it.",
    CancelResult.STARTED: "⚠️ This image is already being made, so it can't be cancelled now.",
    CancelResult.FINISHED: "⚠️ This request has already finished.",
}


class CancelButton(PeelButton, template=r"peel:cancel:(?P<id>\d+)"):
    """On a queued job's status message, for its owner, until the job starts."""

    action, label = "cancel", "Cancel"

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: PeelBot = interaction.client  # type: ignore[assignment]
        # Acknowledge first: cancelling waits for the job to release its reservation.
        await interaction.response.defer()
        result = await bot.service.cancel(self.ident, interaction.user.id)
        if result is CancelResult.CANCELLED:
            await interaction.edit_original_response(
                content=CANCELLED_TEXT, view=None, allowed_mentions=NO_MENTIONS
            )
            return
        await interaction.followup.send(CANCEL_REFUSALS[result], ephemeral=True,
                                        allowed_mentions=NO_MENTIONS)


def cancel_view(job_key: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_key))
    return view


def result_view(outcome: Outcome) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(outcome.turn_id))
    view.add_item(EditButton(outcome.turn_id))
    view.add_item(DeleteButton(outcome.turn_id))
    return view


class Buttons(commands.Cog):
    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(RerollButton, EditButton, DeleteButton, CancelButton)


async def setup(bot: PeelBot) -> None:
    await bot.add_cog(Buttons(bot))
