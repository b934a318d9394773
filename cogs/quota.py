"""/quota show|set|grant|reset: server admins manage members' budgets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import NO_MENTIONS
from bot.storage.ledger import Balance
from cogs.usage import budget_lines

if TYPE_CHECKING:
    from bot.client import PeelBot

MAX_TOKENS = 1_000_000_000


def manages_server(interaction: discord.Interaction) -> bool:
    """Checked on our side too: Discord's default permissions can be overridden per server."""
    if not interaction.permissions.manage_guild:
        raise app_commands.MissingPermissions(["manage_guild"])
    return True


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Quota(commands.GroupCog, group_name="quota",
            group_description="Manage members' image budgets (Manage Server)"):
    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        super().__init__()

    async def _reply(self, interaction: discord.Interaction, member: discord.abc.User,
                     headline: str, balance: Balance) -> None:
        embed = discord.Embed(title=headline, description="\n".join(budget_lines(balance)))
        embed.set_footer(text=f"Member id {member.id}")
        await interaction.response.send_message(
            f"Budget of {member.mention}", embed=embed, ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="show", description="Show a member's budget and spend")
    @app_commands.describe(user="The member")
    @app_commands.check(manages_server)
    async def show(self, interaction: discord.Interaction, user: discord.User) -> None:
        balance = await self.bot.service.ledger.balance(interaction.guild_id or 0, user.id)
        await self._reply(interaction, user, "Budget", balance)

    @app_commands.command(name="set", description="Set a member's daily token limit")
    @app_commands.describe(user="The member", tokens="Daily limit; 0 = unlimited, "
                           "leave empty to return to the server default")
    @app_commands.check(manages_server)
    async def set_(self, interaction: discord.Interaction, user: discord.User,
                   tokens: app_commands.Range[int, 0, MAX_TOKENS] | None = None) -> None:
        balance = await self.bot.service.ledger.set_limit(
            interaction.guild_id or 0, user.id, tokens, actor_id=interaction.user.id
        )
        what = "default" if tokens is None else ("unlimited" if tokens == 0 else f"{tokens:,}")
        await self._reply(interaction, user, f"Daily limit set to {what}", balance)

    @app_commands.command(name="grant", description="Give a member extra tokens for today")
    @app_commands.describe(user="The member", tokens="Extra tokens for the current period")
    @app_commands.check(manages_server)
    async def grant(self, interaction: discord.Interaction, user: discord.User,
                    tokens: app_commands.Range[int, 1, MAX_TOKENS]) -> None:
        balance = await self.bot.service.ledger.grant(
            interaction.guild_id or 0, user.id, tokens, actor_id=interaction.user.id
        )
        await self._reply(interaction, user, f"Granted {tokens:,} tokens", balance)

    @app_commands.command(name="reset", description="Reset a member's spend for today")
    @app_commands.describe(user="The member")
    @app_commands.check(manages_server)
    async def reset(self, interaction: discord.Interaction, user: discord.User) -> None:
        balance = await self.bot.service.ledger.reset(
            interaction.guild_id or 0, user.id, actor_id=interaction.user.id
        )
        await self._reply(interaction, user, "Spend reset", balance)


async def setup(bot: PeelBot) -> None:
    await bot.add_cog(Quota(bot))
