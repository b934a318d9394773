"""/usage and /quota through the fake Discord, and budgets enforced on /imagine."""

from __future__ import annotations

from typing import Any

from tests.harness import Harness


async def reply_of(harness: Harness, interaction: Any) -> Any:
    await harness.discord.wait_until(lambda: bool(interaction.messages()))
    return interaction.messages()[-1]


def embed_text(message: Any) -> str:
    parts = []
    for embed in message.embeds:
        parts.append(embed.get("title", ""))
        parts.append(embed.get("description", ""))
        for field in embed.get("fields", []):
            parts.append(field["name"] + "\n" + field["value"])
    return "\n".join(parts)


async def imagine(harness: Harness, user: Any, prompt: str = "a tree") -> Any:
    fake = harness.discord
    interaction = await fake.slash("imagine", {"prompt": prompt}, user=user)
    await fake.wait_until(
        lambda: any(m.attachments or m.ephemeral for m in interaction.messages())
    )
    return interaction


async def test_usage_shows_spend_cost_reset_and_last_turns(gemini_bot: Harness) -> None:
    fake = gemini_bot.discord
    await imagine(gemini_bot, fake.alice)
    interaction = await fake.slash("usage", user=fake.alice)
    message = await reply_of(gemini_bot, interaction)
    assert message.ephemeral
    text = embed_text(message)
    balance = await gemini_bot.service.ledger.balance(fake.guild_id, fake.alice.id)
    assert f"{balance.spent:,}" in text and "50,000" in text
    assert "`░" in text or "`█" in text  # the bar
    assert f"<t:{balance.resets_at}:R>" in text
    assert "$" in text
    assert "Last turns" in text and "charged" in text
    assert message.allowed_mentions == {"parse": []}


async def test_admin_sets_grants_and_resets_a_budget(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    ledger = gemini_bot.service.ledger
    set_call = await fake.slash("quota", {"user": fake.alice, "tokens": 1000},
                                subcommand="set", user=fake.owner)
    assert (await reply_of(gemini_bot, set_call)).ephemeral
    assert (await ledger.balance(fake.guild_id, fake.alice.id)).limit == 1000

    # The job needs more than 1000 tokens: refused at once, nothing charged, no upstream call.
    before = len(gemini.requests)
    refused = await imagine(gemini_bot, fake.alice)
    refusal = next(m for m in refused.messages() if m.ephemeral)
    assert "tokens but you have 1,000 left" in refusal.content
    assert "resets <t:" in refusal.content
    assert len(gemini.requests) == before
    balance = await ledger.balance(fake.guild_id, fake.alice.id)
    assert balance.spent == 0 and balance.reserved == 0

    grant = await fake.slash("quota", {"user": fake.alice, "tokens": 5000},
                             subcommand="grant", user=fake.owner)
    await reply_of(gemini_bot, grant)
    done = await imagine(gemini_bot, fake.alice)
    assert any(m.attachments for m in done.messages())
    spent = (await ledger.balance(fake.guild_id, fake.alice.id)).spent
    assert spent > 0

    show = await fake.slash("quota", {"user": fake.alice}, subcommand="show", user=fake.owner)
    assert f"{spent:,}" in embed_text(await reply_of(gemini_bot, show))

    reset = await fake.slash("quota", {"user": fake.alice}, subcommand="reset", user=fake.owner)
    await reply_of(gemini_bot, reset)
    assert (await ledger.balance(fake.guild_id, fake.alice.id)).spent == 0

    audit = await ledger.audit_log(fake.guild_id, fake.alice.id)
    assert {entry.action for entry in audit} >= {"set_limit", "grant", "reset"}
    assert all(entry.actor_id == fake.owner.id for entry in audit)


async def test_member_without_manage_server_is_refused(gemini_bot: Harness) -> None:
    fake = gemini_bot.discord
    ledger = gemini_bot.service.ledger
    for sub, options in (("show", {"user": fake.bob}),
                         ("set", {"user": fake.alice, "tokens": 1}),
                         ("grant", {"user": fake.alice, "tokens": 99999}),
                         ("reset", {"user": fake.alice})):
        interaction = await fake.slash("quota", options, subcommand=sub, user=fake.alice)
        message = await reply_of(gemini_bot, interaction)
        assert message.ephemeral
        assert "Manage Server" in message.content
    balance = await ledger.balance(fake.guild_id, fake.alice.id)
    assert balance.limit == 50_000 and balance.granted == 0
    assert await ledger.audit_log(fake.guild_id) == []
    # Discord hides the command from members by default as well.
    assert int(fake.commands["quota"]["default_member_permissions"]) == 1 << 5
