"""/imagine end to end on each of the four routes to the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.apimart import FakeApimart
from tests.fakes.gemini import FakeGemini
from tests.fakes.gmi import FakeGmi
from tests.fakes.linkmodel import FakeLinkmodel
from tests.harness import png_bytes, running_bot

ROUTES = {
    "gemini": FakeGemini,
    "gmi": FakeGmi,
    "apimart": FakeApimart,
    "linkmodel": FakeLinkmodel,
}


@pytest.mark.parametrize("provider", list(ROUTES))
async def test_imagine_on_every_route(tmp_path: Path, provider: str) -> None:
    upstream = ROUTES[provider]()
    async with running_bot(tmp_path, upstream, provider=provider,
                           provider_poll_scale=0.01) as harness:
        fake = harness.discord
        reference = png_bytes(30, 30, (5, 100, 5))
        attachment = fake.add_attachment(reference, "ref.png", "image/png")
        interaction = await fake.slash(
            "imagine", {"prompt": "a blue bird", "image": attachment}, user=fake.alice
        )
        await fake.wait_until(lambda: any(m.attachments for m in interaction.messages()),
                              timeout=20)
        message = interaction.messages()[-1]
        assert [data for _, data in message.attachments] == [upstream.image]
        assert message.allowed_mentions == {"parse": []}
        assert "tokens" in message.content
        if provider != "gemini":
            # The task routes report no tokens: the figures are marked as estimated.
            assert "(estimated)" in message.content
        balance = await harness.service.ledger.balance(fake.guild_id, fake.alice.id)
        assert balance.spent > 0 and balance.reserved == 0
        recent = await harness.service.ledger.recent(fake.guild_id, fake.alice.id)
        assert recent[0].provider == provider
        assert recent[0].reported is (provider == "gemini")


@pytest.mark.parametrize("provider", list(ROUTES))
async def test_upstream_block_on_every_route_is_explained_and_not_charged(
    tmp_path: Path, provider: str
) -> None:
    upstream = ROUTES[provider]()
    upstream.push("image_safety" if provider == "gemini" else "task_failed")
    async with running_bot(tmp_path, upstream, provider=provider,
                           provider_poll_scale=0.01) as harness:
        fake = harness.discord
        interaction = await fake.slash("imagine", {"prompt": "forbidden"}, user=fake.alice)
        await fake.wait_until(lambda: any(m.ephemeral for m in interaction.messages()),
                              timeout=20)
        refusal = next(m for m in interaction.messages() if m.ephemeral)
        assert "blocked" in refusal.content.lower()
        balance = await harness.service.ledger.balance(fake.guild_id, fake.alice.id)
        assert balance.reserved == 0
        if provider != "gemini":
            assert balance.spent == 0
