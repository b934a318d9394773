"""Status messages across a restart: a job's "Queued" or "Generating" message never stays
behind to lie. The next start edits it into the truth (interrupted, or the resumed job's own
progress) and removes it once the result is posted. Real bot, FakeDiscord, FakeGemini."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

import pytest

from bot.models import ImageData, Usage
from bot.recovery import INTERRUPTED_STATUS, INTERRUPTED_TEXT
from bot.storage.conversations import NewTurn
from tests.fakes.discord_models import FakeMessage
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeGemini
from tests.harness import Harness, png_bytes
from tests.test_jobs_e2e import (
    NO_MENTIONS,
    channel_notices_for,
    channel_results_for,
    left_over_job,
    peel_in_process,
    peel_process,
    wait_ephemeral,
    wait_result,
)

# -- helpers --------------------------------------------------------------------------------


def status_reply(fake: FakeDiscord, to: FakeMessage, text: str) -> FakeMessage | None:
    """Peel's status message replying to the member's message `to`, if it shows `text`."""
    for message in fake.channel_messages(to.channel_id):
        reference = message.message_reference or {}
        if (message.author_id == fake.bot_user_id and text in message.content
                and reference.get("message_id") == str(to.id)):
            return message
    return None


async def wait_status_reply(fake: FakeDiscord, to: FakeMessage, text: str) -> FakeMessage:
    await fake.wait_until(lambda: status_reply(fake, to, text) is not None, what=text)
    message = status_reply(fake, to, text)
    assert message is not None
    return message


def stored_status_id(data_dir: Path, key: int) -> int | None:
    """The status message id a (running or killed) bot process stored for a job."""
    uri = f"file:{data_dir / 'peel.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        row = conn.execute(
            "SELECT status_message_id FROM jobs WHERE key = ?", (str(key),)
        ).fetchone()
    return row[0] if row else None


def bot_status(fake: FakeDiscord, text: str, components: list[dict[str, object]] | None = None,
               ) -> FakeMessage:
    """A status message as a killed run left it."""
    body: dict[str, object] = {"content": text, "components": components or []}
    return fake.create_message(channel_id=fake.channel_id, author_id=fake.bot_user_id,
                               body=body, uploads=[])


def cancel_row(key: str) -> list[dict[str, object]]:
    button = {"type": 2, "style": 2, "label": "Cancel", "custom_id": f"peel:cancel:{key}"}
    return [{"type": 1, "components": [button]}]


# -- message-triggered turns ----------------------------------------------------------------


@pytest.mark.slow
async def test_a_sigkill_leaves_no_stale_status_on_message_turns(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with FakeDiscord() as fake, FakeGemini() as gemini:
        gemini.push("hang")
        async with peel_process(fake, gemini, data_dir, MAX_CONCURRENT_JOBS="1") as process:
            stuck = await fake.user_message("a stuck fox", user=fake.alice, mention_bot=True)
            generating = await wait_status_reply(fake, stuck, "Generating")
            waiting = await fake.user_message("a waiting owl", user=fake.bob, mention_bot=True)
            queued = await wait_status_reply(fake, waiting, "Queued, position 1")
            assert f"peel:cancel:{waiting.id}" in queued.custom_ids
            # Each status message is stored with its job as soon as it is posted.
            await fake.wait_until(lambda: stored_status_id(data_dir, stuck.id) == generating.id
                                  and stored_status_id(data_dir, waiting.id) == queued.id)
            process.send_signal(signal.SIGKILL)
            await process.wait()

        gemini.latency = 1.0
        async with peel_in_process(fake, gemini, data_dir):
            await fake.wait_until(
                lambda: bool(channel_notices_for(fake, fake.alice, INTERRUPTED_TEXT)))
            [notice] = channel_notices_for(fake, fake.alice, INTERRUPTED_TEXT)
            assert notice.allowed_mentions == NO_MENTIONS
            assert notice.message_reference is not None
            assert notice.message_reference["message_id"] == str(generating.id)
            assert generating.content == INTERRUPTED_STATUS and generating.custom_ids == []
            assert generating.allowed_mentions == NO_MENTIONS
            # The resumed job shows its progress in its old status, then posts its result.
            await fake.wait_until(lambda: "Generating" in queued.content, timeout=15)
            assert queued.custom_ids == [] and queued.allowed_mentions == NO_MENTIONS
            await fake.wait_until(lambda: bool(channel_results_for(fake, fake.bob)), timeout=15)
            await fake.wait_until(lambda: queued.deleted)
            [result] = channel_results_for(fake, fake.bob)
            assert result.allowed_mentions == NO_MENTIONS and result.mention_ids == []


# -- interaction turns ----------------------------------------------------------------------


async def test_a_restart_clears_the_placeholders_of_delivered_and_lost_jobs(
    gemini_bot: Harness,
) -> None:
    fake, service = gemini_bot.discord, gemini_bot.service
    image = ImageData(png_bytes(8, 8, (9, 9, 9)), "image/png")
    # Crashed after storing its result, before posting it: its placeholder still spins.
    placeholder = bot_status(fake, "🎨 Generating…")
    await left_over_job(gemini_bot, "810001", fake.alice, "stored")
    await service.jobs.set_status_message("810001", placeholder.id)
    await service.jobs.set_status("810001", "running")
    await service.conversations.add_turn(NewTurn(
        job_key="810001", parent_id=None, guild_id=fake.guild_id, channel_id=fake.channel_id,
        thread_id=None, user_id=fake.alice.id, prompt="stored", aspect_ratio=None,
        caption=None, provider="gemini", model="m", usage=Usage(input_tokens=10),
        cost_micro_usd=1, image_shas=(await service.blobs.put(image),),
    ))
    # Crashed mid-call, and someone has deleted its status message since.
    gone = bot_status(fake, "🎨 Generating…")
    await left_over_job(gemini_bot, "810002", fake.bob, "lost")
    await service.jobs.set_status_message("810002", gone.id)
    await service.jobs.set_status("810002", "running")
    fake.delete_message(gone)

    await gemini_bot.restart()
    await fake.wait_until(lambda: bool(channel_results_for(fake, fake.alice)))
    await fake.wait_until(lambda: placeholder.deleted)
    # The owner of the lost job is still told, in a message of its own.
    await fake.wait_until(lambda: bool(channel_notices_for(fake, fake.bob, INTERRUPTED_TEXT)))
    [notice] = channel_notices_for(fake, fake.bob, INTERRUPTED_TEXT)
    assert notice.message_reference is None and notice.allowed_mentions == NO_MENTIONS


async def test_slash_and_reroll_jobs_store_their_placeholder(gemini_bot: Harness) -> None:
    fake, service = gemini_bot.discord, gemini_bot.service
    first = await fake.slash("imagine", {"prompt": "a red kite"}, user=fake.alice)
    result = await wait_result(fake, first)
    turn_id = result.custom_ids[0].rsplit(":", 1)[1]
    reroll = await fake.click(result.id, f"peel:reroll:{turn_id}", user=fake.alice)
    await wait_result(fake, reroll)
    for interaction in (first, reroll):
        record = await service.jobs.get(str(interaction.id))
        assert record.status_message_id == interaction.original_message_id is not None


async def test_a_stale_cancel_button_the_restart_cannot_fix_still_tells_the_truth(
    gemini_bot: Harness,
) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    stale = bot_status(fake, "⏳ Queued, position 1", cancel_row("820001"))
    await left_over_job(gemini_bot, "820001", fake.alice, "resumed")
    await gemini_bot.service.jobs.set_status_message("820001", stale.id)
    # Peel may no longer edit or delete that message (e.g. its permissions changed).
    fake.inject_fault(f"/channels/{fake.channel_id}/messages/{stale.id}", 403, code=50013,
                      message="Missing Permissions", count=20)
    gemini.latency = 1.0
    await gemini_bot.restart()
    await fake.wait_until(lambda: len(gemini.requests) == 1, timeout=10)
    click = await fake.click(stale.id, "peel:cancel:820001", user=fake.alice)
    assert "already being made" in await wait_ephemeral(fake, click)
    await fake.wait_until(lambda: bool(channel_results_for(fake, fake.alice)), timeout=10)
    await fake.wait_until(lambda: not gemini_bot.service.live.started)
    late = await fake.click(stale.id, "peel:cancel:820001", user=fake.alice)
    assert "already finished" in await wait_ephemeral(fake, late)
    assert not stale.deleted
