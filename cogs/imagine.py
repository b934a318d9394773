"""/imagine: text-to-image, or image-guided generation with attached references."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.models import ASPECT_RATIOS
from bot.turns import run_interaction_turn

if TYPE_CHECKING:
    from bot.client import PeelBot

ASPECT_CHOICES = [app_commands.Choice(name="auto", value="auto")] + [
    app_commands.Choice(name=ratio, value=ratio) for ratio in ASPECT_RATIOS
]


def aspect_value(choice: app_commands.Choice[str] | None) -> str | None:
    if choice is None or choice.value == "auto":
        return None
    return choice.value


class Imagine(commands.Cog):
    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Create an image from a description")
    @app_commands.describe(
        prompt="What the image should show",
        aspect_ratio="Shape of the image (auto lets the model choose)",
        image="A reference image to guide the result",
        image2="Another reference image",
        image3="Another reference image",
        count="How many images to make (1-4); each one uses your budget",
    )
    @app_commands.choices(aspect_ratio=ASPECT_CHOICES)
    @app_commands.guild_only()
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        aspect_ratio: app_commands.Choice[str] | None = None,
        image: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        count: app_commands.Range[int, 1, 4] = 1,
    ) -> None:
        attachments = [a for a in (image, image2, image3) if a is not None]
        await run_interaction_turn(
            interaction, kind="imagine", prompt=prompt, aspect_ratio=aspect_value(aspect_ratio),
            count=count, attachments=attachments,
        )


async def setup(bot: PeelBot) -> None:
    await bot.add_cog(Imagine(bot))
