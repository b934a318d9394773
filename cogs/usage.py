"""/usage: a member's own budget, spend and last turns (only they see it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.pricing import format_usd
from bot.render import NO_MENTIONS
from bot.storage.ledger import Balance, LedgerEntry

if TYPE_CHECKING:
    from bot.client import PeelBot

BAR_WIDTH = 20


def bar(used: int, limit: int) -> str:
    filled = min(BAR_WIDTH, round(BAR_WIDTH * used / limit)) if limit > 0 else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def budget_lines(balance: Balance) -> list[str]:
    used = balance.spent + balance.reserved
    if balance.limit is None:
        lines = [f"**{balance.spent:,}** tokens spent this period · unlimited budget"]
    else:
        total = balance.limit + balance.granted
        granted = f" (incl. {balance.granted:,} granted)" if balance.granted else ""
        lines = [
            f"`{bar(used, total)}` **{balance.spent:,}** / {total:,} tokens{granted}",
            f"**{max(balance.remaining or 0, 0):,}** tokens left",
        ]
    if balance.reserved:
        lines.append(f"{balance.reserved:,} tokens held for jobs in progress")
    kinds = balance.by_kind
    lines.append(
        f"Input {kinds.get('input', 0):,} · image output {kinds.get('output_image', 0):,} · "
        f"text output {kinds.get('output_text', 0):,} · thinking {kinds.get('thinking', 0):,}"
    )
    lines.append(f"Cost this period: **{format_usd(balance.cost_micro_usd)}**")
    lines.append(f"Resets <t:{balance.resets_at}:R> (<t:{balance.resets_at}:f>)")
    return lines


def entry_line(entry: LedgerEntry) -> str:
    what = "charged" if entry.kind == "charge" else "failed, billed"
    estimated = " (estimated)" if not entry.reported else ""
    return (f"<t:{entry.created_at}:R> · {what} {entry.total_tokens:,} tokens{estimated} · "
            f"{format_usd(entry.cost_micro_usd)}")


class Usage(commands.Cog):
    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="See your image budget and recent spend")
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction) -> None:
        ledger = self.bot.service.ledger
        guild_id = interaction.guild_id or 0
        balance = await ledger.balance(guild_id, interaction.user.id)
        recent = await ledger.recent(guild_id, interaction.user.id, limit=5)
        embed = discord.Embed(title="Your Peel budget", description="\n".join(
            budget_lines(balance)))
        embed.add_field(
            name="Last turns",
            value="\n".join(entry_line(e) for e in recent) or "No images yet.",
            inline=False,
        )
        await interaction.response.send_message(embed=embed, ephemeral=True,
                                                allowed_mentions=NO_MENTIONS)


async def setup(bot: PeelBot) -> None:
    await bot.add_cog(Usage(bot))
