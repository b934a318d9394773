"""/imagine driven as a member would, through the real discord.py client and real HTTP."""

from __future__ import annotations

import asyncio

from tests.harness import Harness, png_bytes

NONE_MENTIONS = {"parse": []}


def final_message(harness: Harness, interaction: object) -> object:
    messages = interaction.messages()  # type: ignore[attr-defined]
    return messages[-1] if messages else None


async def wait_result(harness: Harness, interaction: object, timeout: float = 10) -> object:
    def has_result() -> bool:
        message = final_message(harness, interaction)
        return message is not None and bool(message.attachments)

    await harness.discord.wait_until(has_result, timeout=timeout)
    return final_message(harness, interaction)


async def test_imagine_posts_the_image_with_usage_and_starts_a_thread(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    interaction = await fake.slash(
        "imagine", {"prompt": "a red fox in snow", "aspect_ratio": "16:9"}, user=fake.alice
    )
    message = await wait_result(gemini_bot, interaction)

    # Acknowledged at once with a deferred (thinking) response.
    assert interaction.callbacks[0]["type"] == 5
    assert interaction.ack_latency is not None and interaction.ack_latency < 3.0
    # The exact bytes the model produced were uploaded to Discord.
    assert [data for _, data in message.attachments] == [gemini.image]
    # Upstream got the model, prompt and aspect ratio.
    request = gemini.requests[-1]
    assert request.model == "gemini-3.1-flash-lite-image"
    assert request.prompt == "a red fox in snow"
    assert request.aspect_ratio == "16:9"
    assert request.images == []
    # Token count and remaining budget are shown; nobody gets pinged.
    assert "tokens" in message.content and "left today" in message.content
    assert message.allowed_mentions == NONE_MENTIONS
    # A thread was started on the result message.
    await fake.wait_until(lambda: message.id in fake.threads)
    assert fake.threads[message.id].name.startswith("a red fox in snow")
    # Buttons for reroll, edit and delete.
    assert {"peel:reroll", "peel:edit", "peel:delete"} <= {
        cid.rsplit(":", 1)[0] for cid in message.custom_ids
    }


async def test_a_job_is_done_without_waiting_for_its_thread(gemini_bot: Harness) -> None:
    """Discord holding back thread creation (a 429) delays the thread, not the job: the
    job is done and off its member's count, then the thread comes and is recorded."""
    fake, service = gemini_bot.discord, gemini_bot.service
    fake.inject_429("/channels/", 1.5, method="POST", count=1)
    interaction = await fake.slash("imagine", {"prompt": "a slow heron"}, user=fake.alice)
    message = await wait_result(gemini_bot, interaction)
    record = await service.jobs.get(str(interaction.id))
    for _ in range(50):
        record = await service.jobs.get(str(interaction.id))
        if record.status == "done":
            break
        await asyncio.sleep(0.02)
    assert record.status == "done"
    assert message.id not in fake.threads  # still held back by the 429
    assert service.scheduler.jobs_of((fake.guild_id, fake.alice.id)) == 0
    await fake.wait_until(lambda: message.id in fake.threads, timeout=10)
    thread_id = fake.threads[message.id].id
    for _ in range(50):
        if await service.conversations.thread(thread_id) is not None:
            break
        await asyncio.sleep(0.02)
    turn = await service.conversations.latest_in_thread(thread_id)
    assert turn is not None and turn.message_id == message.id


async def test_imagine_sends_reference_images_upstream(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    first, second = png_bytes(40, 30, (1, 2, 3)), png_bytes(20, 20, (9, 9, 9))
    a = fake.add_attachment(first, "one.png", "image/png")
    b = fake.add_attachment(second, "two.png", "image/png")
    interaction = await fake.slash(
        "imagine", {"prompt": "combine these", "image": a, "image2": b}, user=fake.alice
    )
    await wait_result(gemini_bot, interaction)
    request = gemini.requests[-1]
    assert request.images == [("image/png", first), ("image/png", second)]
    assert request.aspect_ratio is None


async def test_every_message_the_bot_sends_has_no_mentions(gemini_bot: Harness) -> None:
    fake = gemini_bot.discord
    interaction = await fake.slash(
        "imagine", {"prompt": "@everyone <@&1> party"}, user=fake.alice
    )
    await wait_result(gemini_bot, interaction)
    bot_messages = [m for m in fake.messages.values() if m.author_id == fake.bot_user_id]
    assert bot_messages
    for message in bot_messages:
        assert message.allowed_mentions == NONE_MENTIONS, message


async def test_upstream_failure_gets_an_ephemeral_message(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    gemini.push("image_safety")
    interaction = await fake.slash("imagine", {"prompt": "something"}, user=fake.alice)

    def refused_privately() -> bool:
        messages = interaction.messages()
        private = any(m.ephemeral and "safety" in m.content for m in messages)
        public = [m for m in messages if not m.deleted and not m.ephemeral]
        return private and not public

    await fake.wait_until(refused_privately)
    # The removed public placeholder never carried the refusal's detail.
    for message in interaction.messages():
        if not message.ephemeral:
            assert "safety" not in message.content
    assert not any("did not respond" in m.content for m in fake.messages.values())


async def test_count_makes_that_many_images(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    before = len(gemini.requests)
    interaction = await fake.slash("imagine", {"prompt": "cats", "count": 3}, user=fake.alice)
    message = await wait_result(gemini_bot, interaction)
    assert len(message.attachments) == 3
    assert len(gemini.requests) - before == 3
