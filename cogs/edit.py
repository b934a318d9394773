"""/edit and the Edit image message command: change an existing image by instruction."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.tree import send_ephemeral
from bot.turns import run_interaction_turn
from cogs.imagine import ASPECT_CHOICES, aspect_value

if TYPE_CHECKING:
    from bot.client import PeelBot

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    """Attachments that look like images; their bytes are checked again after download."""
    found = []
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").lower()
        if content_type.startswith("image/") or attachment.filename.lower().endswith(
            IMAGE_SUFFIXES
        ):
            found.append(attachment)
    return found


class EditModal(discord.ui.Modal, title="Edit image"):
    instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
        label="What should change?",
        placeholder="e.g. make the sky purple",
        style=discord.TextStyle.paragraph,
        max_length=4000,
    )

    def __init__(
        self,
        *,
        parent_turn_id: int | None = None,
        attachments: list[discord.Attachment] | None = None,
    ) -> None:
        super().__init__(timeout=900)
        self.parent_turn_id = parent_turn_id
        self.attachments = attachments or []

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await run_interaction_turn(
            interaction, kind="edit", prompt=self.instruction.value,
            attachments=self.attachments, parent_turn_id=self.parent_turn_id,
        )

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception
    ) -> None:
        log.error("edit modal failed", exc_info=error)
        await send_ephemeral(interaction, "⚠️ Something went wrong. Nothing was charged.")


class Edit(commands.Cog):
    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_message)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="edit", description="Edit an image by describing the change")
    @app_commands.describe(
        image="The image to edit",
        prompt="What should change, e.g. 'make the sky purple'",
        aspect_ratio="Shape of the result (auto keeps the model's choice)",
        image2="An extra reference image",
        image3="Another extra reference image",
    )
    @app_commands.choices(aspect_ratio=ASPECT_CHOICES)
    @app_commands.guild_only()
    async def edit(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 4000],
        aspect_ratio: app_commands.Choice[str] | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
    ) -> None:
        attachments = [a for a in (image, image2, image3) if a is not None]
        await run_interaction_turn(
            interaction, kind="edit", prompt=prompt, aspect_ratio=aspect_value(aspect_ratio),
            attachments=attachments,
        )

    async def edit_message(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        """Edit image (message command): a modal asks for the instruction."""
        turn = await self.bot.service.conversations.by_message(message.id)
        attachments = [] if turn is not None else image_attachments(message)
        if turn is None and not attachments:
            await send_ephemeral(interaction, "⚠️ That message has no image to edit.")
            return
        await interaction.response.send_modal(
            EditModal(parent_turn_id=turn.id if turn else None, attachments=attachments)
        )


async def setup(bot: PeelBot) -> None:
    await bot.add_cog(Edit(bot))
