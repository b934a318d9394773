"""Jobs end to end: idempotency, limits, fairness, cancel, buttons after a restart, token
expiry, and crash/SIGTERM recovery, through the real bot against FakeDiscord and FakeGemini.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.contract import Delivery, Outcome, TurnSpec
from bot.delivery import CANCELLED_TEXT, HANDOFF_NOTE, InteractionReporter
from bot.livejobs import CancelResult
from bot.models import ImageData, Usage
from bot.recovery import INTERRUPTED_STATUS, INTERRUPTED_TEXT
from bot.storage.conversations import NewTurn
from bot.storage.jobs import JobRecord
from tests.fakes.discord_models import FakeInteraction, FakeMessage, FakeUser
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeGemini
from tests.harness import Harness, make_settings, png_bytes, restore_discord_urls, running_bot
from tests.test_process import start_process

NO_MENTIONS = {"parse": []}
_message_ids = itertools.count(7_000_000_000)


# -- helpers --------------------------------------------------------------------------------


def result_of(interaction: FakeInteraction) -> FakeMessage | None:
    return next((m for m in interaction.messages() if m.attachments and not m.deleted), None)


async def wait_result(fake: FakeDiscord, interaction: FakeInteraction,
                      timeout: float = 10) -> FakeMessage:
    await fake.wait_until(lambda: result_of(interaction) is not None, timeout=timeout)
    message = result_of(interaction)
    assert message is not None
    return message


def ephemeral_texts(interaction: FakeInteraction) -> list[str]:
    return [m.content for m in interaction.messages() if m.ephemeral]


async def wait_ephemeral(fake: FakeDiscord, interaction: FakeInteraction,
                         timeout: float = 5) -> str:
    await fake.wait_until(lambda: bool(ephemeral_texts(interaction)), timeout=timeout)
    return ephemeral_texts(interaction)[-1]


def content_of(interaction: FakeInteraction) -> str:
    message = interaction.original_message()
    return message.content if message is not None else ""


def status_of(interaction: FakeInteraction) -> FakeMessage:
    message = interaction.original_message()
    assert message is not None
    return message


async def wait_queued(fake: FakeDiscord, interaction: FakeInteraction,
                      position: int | None = None, timeout: float = 10) -> FakeMessage:
    """Until the interaction's status says it is queued, with the owner's Cancel button."""
    text = f"Queued, position {position}" if position else "Queued, position"

    def shown() -> bool:
        message = interaction.original_message()
        return (message is not None and text in message.content
                and f"peel:cancel:{interaction.id}" in message.custom_ids)

    await fake.wait_until(shown, timeout=timeout, what=f"status {text!r} with Cancel")
    return status_of(interaction)


def channel_results_for(fake: FakeDiscord, user: FakeUser) -> list[FakeMessage]:
    """Results posted as plain channel messages (not through an interaction) for `user`."""
    return [
        m for m in fake.channel_messages(fake.channel_id)
        if m.author_id == fake.bot_user_id and m.interaction_id is None and m.attachments
        and m.content.startswith(f"<@{user.id}>") and not m.deleted
    ]


def channel_notices_for(fake: FakeDiscord, user: FakeUser, text: str) -> list[FakeMessage]:
    return [
        m for m in fake.channel_messages(fake.channel_id)
        if m.author_id == fake.bot_user_id and m.interaction_id is None
        and m.content.startswith(f"<@{user.id}>") and text in m.content
    ]


def text_input_id(modal: dict[str, Any]) -> str:
    for top in modal["components"]:
        inner = [top["component"]] if top.get("type") == 18 else top["components"]
        for component in inner:
            if component.get("type") == 4:
                return str(component["custom_id"])
    raise AssertionError(f"modal has no text input: {modal}")


class RecordingReporter:
    """A Reporter for driving the service directly: records what the member would see."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def queued(self, position: int) -> None:
        self.events.append(f"queued {position}")

    async def started(self) -> None:
        self.events.append("started")

    async def deliver(self, outcome: Outcome) -> Delivery:
        self.events.append("delivered")
        return Delivery(next(_message_ids))

    async def refuse(self, message: str) -> None:
        self.events.append(f"refused: {message}")

    async def cancelled(self) -> None:
        self.events.append("cancelled")


def spec_for(fake: FakeDiscord, key: str, prompt: str) -> TurnSpec:
    return TurnSpec(key=key, kind="imagine", guild_id=fake.guild_id, channel_id=fake.channel_id,
                    user_id=fake.alice.id, prompt=prompt)


async def integrity(harness: Harness) -> str:
    assert harness.runtime is not None
    row = await harness.runtime.db.fetchone("PRAGMA integrity_check")
    assert row is not None
    return str(row[0])


# -- 1. one job per event -------------------------------------------------------------------


async def test_the_same_key_twice_makes_one_job(gemini_bot: Harness) -> None:
    fake, gemini, service = gemini_bot.discord, gemini_bot.upstream, gemini_bot.service
    gemini.latency = 0.3
    first, second = RecordingReporter(), RecordingReporter()
    outcomes = await asyncio.gather(
        service.run(spec_for(fake, "900001", "one fox"), first),
        service.run(spec_for(fake, "900001", "one fox"), second),
    )
    assert sum(o is not None for o in outcomes) == 1
    assert len(gemini.requests) == 1
    # The duplicate is ignored silently: no refusal, no status.
    assert [first.events, second.events].count([]) == 1
    # Again once the job is done: still nothing.
    late = RecordingReporter()
    assert await service.run(spec_for(fake, "900001", "one fox"), late) is None
    assert late.events == [] and len(gemini.requests) == 1
    assert (await service.jobs.get("900001")).status == "done"


async def test_a_replay_is_ignored_even_when_it_would_be_refused(gemini_bot: Harness) -> None:
    fake, gemini, service = gemini_bot.discord, gemini_bot.upstream, gemini_bot.service
    assert await service.run(spec_for(fake, "900002", "one owl"), RecordingReporter())
    owner = (fake.guild_id, fake.alice.id)
    for _ in range(service.scheduler.max_jobs_per_user):  # the member is at the job limit
        service.scheduler.admit(owner)
    try:
        replay, fresh = RecordingReporter(), RecordingReporter()
        assert await service.run(spec_for(fake, "900002", "one owl"), replay) is None
        assert await service.run(spec_for(fake, "900003", "one owl"), fresh) is None
    finally:
        for _ in range(service.scheduler.max_jobs_per_user):
            service.scheduler.finish(owner)
    assert replay.events == []  # the replay of a finished job: not a word
    assert [e.split(":")[0] for e in fresh.events] == ["refused"]  # a new job over the limit
    assert len(gemini.requests) == 1


async def test_a_duplicated_message_event_is_ignored(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    gemini.latency = 0.3
    message = await fake.user_message("a paper boat", user=fake.alice, mention_bot=True)
    # The gateway delivers the same MESSAGE_CREATE again, during the job and after it.
    await fake.dispatch_message("MESSAGE_CREATE", message)  # type: ignore[misc]
    await fake.wait_until(
        lambda: any(m.attachments for m in fake.channel_messages(fake.channel_id)), timeout=10
    )
    await fake.dispatch_message("MESSAGE_CREATE", message)  # type: ignore[misc]
    await asyncio.sleep(0.5)
    results = [m for m in fake.channel_messages(fake.channel_id) if m.attachments]
    assert len(results) == 1 and len(gemini.requests) == 1
    assert not any("⚠️" in m.content for m in fake.channel_messages(fake.channel_id))


# -- 2. limits and fairness -------------------------------------------------------------------


async def test_a_third_job_while_two_run_is_refused_at_once(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    gemini.latency = 1.5
    running = [await fake.slash("imagine", {"prompt": f"job {i}"}, user=fake.alice)
               for i in range(2)]
    await fake.wait_until(lambda: len(gemini.requests) == 2)
    attachment = fake.add_attachment(png_bytes(), "ref.png", "image/png")
    cdn_before = len(fake.cdn_requests)
    asked = time.monotonic()
    third = await fake.slash("imagine", {"prompt": "job 2", "image": attachment},
                             user=fake.alice)
    refusal = await wait_ephemeral(fake, third)
    assert time.monotonic() - asked < 1.0
    assert len(fake.cdn_requests) == cdn_before  # refused before downloading anything
    assert "already have 2 image jobs queued or running" in refusal
    assert all(result_of(i) is None for i in running)  # refused while the two still ran
    # Only the member sees it: the public placeholder goes away.
    await fake.wait_until(
        lambda: not [m for m in third.messages() if not m.ephemeral and not m.deleted])
    # Another member is not affected by alice's limit.
    other = await fake.slash("imagine", {"prompt": "bob's"}, user=fake.bob)
    for interaction in [*running, other]:
        await wait_result(fake, interaction)
    assert sorted(r.prompt for r in gemini.requests) == ["bob's", "job 0", "job 1"]


async def test_one_members_twenty_jobs_do_not_hold_up_four_others(tmp_path: Path) -> None:
    async with running_bot(tmp_path, FakeGemini(), max_concurrent_jobs=1,
                           max_jobs_per_user=20) as harness:
        fake, gemini, scheduler = harness.discord, harness.upstream, harness.service.scheduler
        others = [fake.bob, *(fake.add_member(name) for name in ("carol", "dave", "erin"))]
        # Hold the one provider slot so the whole line forms before anything runs.
        async with scheduler.slot("test"):
            alice_jobs = [await fake.slash("imagine", {"prompt": f"alice {i}"}, user=fake.alice)
                          for i in range(20)]
            await fake.wait_until(lambda: scheduler.waiting == 20, timeout=15)
            other_jobs = [await fake.slash("imagine", {"prompt": u.name}, user=u)
                          for u in others]
            await fake.wait_until(lambda: scheduler.waiting == 24, timeout=15)
            # Each status shows its place in the round-robin line, with a Cancel button.
            await wait_queued(fake, other_jobs[-1], position=5)
            await wait_queued(fake, alice_jobs[-1], position=24)
        for interaction in [*other_jobs, *alice_jobs]:
            await wait_result(fake, interaction, timeout=30)
        order = [r.prompt for r in gemini.requests]
        # In arrival order the others would come 21st to 24th; fairly, each waits for at
        # most one of alice's calls.
        assert sorted(order[:5]) == ["alice 0", "bob", "carol", "dave", "erin"]
        assert len(order) == 24


async def test_count_runs_that_many_calls_within_the_limits(tmp_path: Path) -> None:
    async with running_bot(tmp_path, FakeGemini(), max_concurrent_jobs=2) as harness:
        fake, gemini = harness.discord, harness.upstream
        gemini.latency = 0.4
        in_flight: list[int] = []
        service = harness.service

        async def watch() -> None:
            while True:
                in_flight.append(service.scheduler.running)
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        interaction = await fake.slash("imagine", {"prompt": "cats", "count": 3}, user=fake.alice)
        message = await wait_result(fake, interaction)
        watcher.cancel()
        assert len(message.attachments) == 3 and len(gemini.requests) == 3
        assert max(in_flight) == 2  # three calls, never more than MAX_CONCURRENT_JOBS at once


# -- 3. cancel ---------------------------------------------------------------------------------


async def test_owner_cancels_a_queued_job(tmp_path: Path) -> None:
    async with running_bot(tmp_path, FakeGemini(), max_concurrent_jobs=1) as harness:
        fake, gemini, service = harness.discord, harness.upstream, harness.service
        async with service.scheduler.slot("test"):
            keep = await fake.slash("imagine", {"prompt": "keep me"}, user=fake.alice)
            drop = await fake.slash("imagine", {"prompt": "drop me"}, user=fake.alice)
            status = await wait_queued(fake, drop, position=2)
            cancel_id = f"peel:cancel:{drop.id}"

            refused = await fake.click(status.id, cancel_id, user=fake.bob)
            assert "Only the member who asked" in await wait_ephemeral(fake, refused)
            assert (await service.jobs.get(str(drop.id))).status == "queued"

            await fake.click(status.id, cancel_id, user=fake.alice)
            await fake.wait_until(lambda: content_of(drop) == CANCELLED_TEXT)
            assert status_of(drop).custom_ids == []  # the button is gone
            job = await service.jobs.get(str(drop.id))
            assert job.status == "cancelled"
            assert [r.key for r in await service.ledger.open_reservations()] == [str(keep.id)]
            assert service.scheduler.waiting == 1
            assert service.scheduler.jobs_of((fake.guild_id, fake.alice.id)) == 1
            gemini.latency = 1.0
        await fake.wait_until(lambda: len(gemini.requests) == 1)
        # Generating: the status says so and the Cancel button is gone.
        await fake.wait_until(lambda: "Generating" in content_of(keep))
        assert status_of(keep).custom_ids == []
        # Once its call has started, a job can no longer be cancelled.
        assert await service.cancel(str(keep.id), fake.alice.id) is CancelResult.STARTED
        assert await service.cancel(str(keep.id), fake.bob.id) is CancelResult.NOT_OWNER
        await wait_result(fake, keep)
        await fake.wait_until(lambda: not service.live.started)  # its row is marked done
        assert [r.prompt for r in gemini.requests] == ["keep me"]
        entries = await service.ledger.recent(fake.guild_id, fake.alice.id)
        assert {(e.key, e.kind, e.total_tokens) for e in entries if e.key == str(drop.id)} == {
            (str(drop.id), "release", 0)
        }
        assert await service.cancel(str(keep.id), fake.alice.id) is CancelResult.FINISHED
        assert await service.ledger.open_reservations() == []


# -- 4. buttons after a restart ------------------------------------------------------------------


async def test_result_buttons_work_after_a_restart(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    reference = png_bytes(30, 20, (5, 80, 5))
    attachment = fake.add_attachment(reference, "ref.png", "image/png")
    first = await fake.slash("imagine", {"prompt": "a green fox", "image": attachment},
                             user=fake.alice)
    result = await wait_result(fake, first)
    turn_id = result.custom_ids[0].rsplit(":", 1)[1]
    await gemini_bot.restart()

    for action in ("reroll", "edit", "delete"):
        click = await fake.click(result.id, f"peel:{action}:{turn_id}", user=fake.bob)
        assert "Only the member" in await wait_ephemeral(fake, click)
    assert len(gemini.requests) == 1 and not result.deleted

    reroll = await fake.click(result.id, f"peel:reroll:{turn_id}", user=fake.alice)
    await wait_result(fake, reroll)
    assert gemini.requests[-1].prompt == "a green fox"
    assert gemini.requests[-1].images == [("image/png", reference)]

    edit = await fake.click(result.id, f"peel:edit:{turn_id}", user=fake.alice)
    await fake.wait_until(lambda: edit.modal is not None)
    assert edit.modal is not None
    submit = await fake.submit_modal(edit, {text_input_id(edit.modal): "make it blue"})
    await wait_result(fake, submit)
    assert gemini.requests[-1].prompt == "make it blue"
    assert gemini.requests[-1].images[0] == ("image/png", gemini.image)  # the image edited

    delete = await fake.click(result.id, f"peel:delete:{turn_id}", user=fake.owner)
    await fake.wait_until(lambda: fake.messages[result.id].deleted)
    assert "Deleted" in await wait_ephemeral(fake, delete)


# -- 5. interaction tokens expire ------------------------------------------------------------------


async def test_a_job_outliving_its_token_is_posted_in_the_channel(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    fake.token_ttl = 1.0
    gemini.latency = 1.5
    interaction = await fake.slash("imagine", {"prompt": "a slow snail"}, user=fake.alice)
    await fake.wait_until(lambda: bool(channel_results_for(fake, fake.alice)), timeout=10)
    [posted] = channel_results_for(fake, fake.alice)
    assert [data for _, data in posted.attachments] == [gemini.image]
    assert posted.allowed_mentions == NO_MENTIONS
    assert any(cid.startswith("peel:reroll:") for cid in posted.custom_ids)
    assert result_of(interaction) is None
    assert fake.requests_to("/webhooks/", "PATCH")[-1].status == 401  # Discord said 50027
    # The placeholder does not go on saying it is working: removed through the channel.
    await fake.wait_until(lambda: status_of(interaction).deleted)


async def test_a_refusal_after_the_token_expired_corrects_the_placeholder(
    gemini_bot: Harness,
) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    fake.token_ttl = 1.0
    gemini.latency = 1.5
    gemini.push("image_safety")
    interaction = await fake.slash("imagine", {"prompt": "a slow block"}, user=fake.alice)
    await fake.wait_until(lambda: "safety" in content_of(interaction), timeout=10)
    placeholder = status_of(interaction)
    assert not placeholder.deleted and placeholder.components == []
    assert placeholder.allowed_mentions == NO_MENTIONS
    balance = await gemini_bot.service.ledger.balance(fake.guild_id, fake.alice.id)
    assert balance.reserved == 0


async def test_a_token_near_expiry_is_not_used(
    gemini_bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = gemini_bot.discord
    # Every token counts as within the margin of its 15-minute expiry.
    monkeypatch.setattr(InteractionReporter, "token_margin", 15 * 60.0)
    interaction = await fake.slash("imagine", {"prompt": "a quick cat"}, user=fake.alice)
    await fake.wait_until(lambda: bool(channel_results_for(fake, fake.alice)), timeout=10)
    assert result_of(interaction) is None
    assert fake.requests_to("/webhooks/", "PATCH") == []  # no call on a dying token


async def test_the_status_hands_over_to_the_channel_before_the_token_expires(
    gemini_bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    # The token is usable for one second after the command (Peel keeps its margin).
    monkeypatch.setattr(InteractionReporter, "token_margin", 15 * 60.0 - 1.0)
    gemini.latency = 2.0
    interaction = await fake.slash("imagine", {"prompt": "a long wait"}, user=fake.alice)
    await fake.wait_until(lambda: HANDOFF_NOTE in content_of(interaction))
    assert status_of(interaction).content.startswith("🎨 Generating")
    edits = len(fake.requests_to("/webhooks/", "PATCH"))
    await fake.wait_until(lambda: bool(channel_results_for(fake, fake.alice)), timeout=10)
    assert len(fake.requests_to("/webhooks/", "PATCH")) == edits  # token left alone since
    assert result_of(interaction) is None
    await fake.wait_until(lambda: status_of(interaction).deleted)


# -- 6. restarts -----------------------------------------------------------------------------------


@asynccontextmanager
async def peel_process(fake: FakeDiscord, gemini: FakeGemini, data_dir: Path,
                       **env: str) -> AsyncIterator[Any]:
    process = await start_process({
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_BASE_URL": fake.base_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DISCORD_DEV_GUILD_ID": str(fake.guild_id),
        "GEMINI_API_KEY": gemini.api_key,
        "GEMINI_BASE_URL": gemini.base_url,
        "DATA_DIR": str(data_dir),
        **env,
    }, data_dir.parent)
    try:
        await fake.wait_ready(timeout=30)
        await fake.wait_until(lambda: "imagine" in fake.commands, timeout=10)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def peel_in_process(fake: FakeDiscord, gemini: FakeGemini,
                          data_dir: Path) -> AsyncIterator[Harness]:
    """The bot started again, in this process, on the same DATA_DIR and fakes."""
    settings = make_settings(fake, data_dir, gemini_api_key=gemini.api_key,
                             gemini_base_url=gemini.base_url)
    harness = Harness(fake, gemini, settings)
    try:
        await harness.start()
        yield harness
    finally:
        await harness.stop()
        restore_discord_urls()


async def left_over_job(harness: Harness, key: str, user: FakeUser, prompt: str, *,
                        reserve: bool = True) -> JobRecord:
    """A job row as a crashed run left it (queued, reserved or not)."""
    fake, service = harness.discord, harness.service
    record = JobRecord(
        key=key, kind="imagine", status="queued", guild_id=fake.guild_id,
        channel_id=fake.channel_id, user_id=user.id, prompt=prompt, aspect_ratio=None,
        count=1, parent_turn_id=None, thread_id=None, reply_to_id=None, start_thread=False,
        lane=None,
    )
    created, _ = await service.jobs.create(record)
    assert created
    if reserve:
        await service.ledger.reserve(key, guild_id=fake.guild_id, user_id=user.id,
                                     usage=Usage(input_tokens=2000), provider="gemini",
                                     model="gemini-3.1-flash-lite-image")
    return record


async def test_a_restart_finishes_what_a_crash_left_half_done(gemini_bot: Harness) -> None:
    fake, gemini, service = gemini_bot.discord, gemini_bot.upstream, gemini_bot.service
    billed = Usage(input_tokens=10, output_image_tokens=1120)
    image = ImageData(png_bytes(8, 8, (1, 1, 1)), "image/png")
    # Crashed after storing its result, before charging and posting it.
    await left_over_job(gemini_bot, "800001", fake.alice, "stored")
    await service.jobs.set_status("800001", "running")
    turn_id, _ = await service.conversations.add_turn(NewTurn(
        job_key="800001", parent_id=None, guild_id=fake.guild_id, channel_id=fake.channel_id,
        thread_id=None, user_id=fake.alice.id, prompt="stored", aspect_ratio=None,
        caption=None, provider="gemini", model="m", usage=billed, cost_micro_usd=1,
        image_shas=(await service.blobs.put(image),),
    ))
    # Crashed after posting, before marking the row done.
    await left_over_job(gemini_bot, "800002", fake.bob, "posted")
    await service.jobs.set_status("800002", "running")
    posted, _ = await service.conversations.add_turn(NewTurn(
        job_key="800002", parent_id=None, guild_id=fake.guild_id, channel_id=fake.channel_id,
        thread_id=None, user_id=fake.bob.id, prompt="posted", aspect_ratio=None, caption=None,
        provider="gemini", model="m", usage=billed, cost_micro_usd=1, image_shas=(),
    ))
    await service.ledger.settle("800002", billed)
    await service.conversations.set_message(posted, next(_message_ids), None)
    # Crashed between queueing and reserving.
    await left_over_job(gemini_bot, "800003", fake.owner, "unreserved", reserve=False)

    await gemini_bot.restart()
    service = gemini_bot.service
    await fake.wait_until(lambda: bool(channel_results_for(fake, fake.alice)))
    [delivered] = channel_results_for(fake, fake.alice)
    assert [data for _, data in delivered.attachments] == [image.data]
    await fake.wait_until(lambda: bool(channel_results_for(fake, fake.owner)))
    await fake.wait_until(lambda: not service.live.started)
    assert [r.prompt for r in gemini.requests] == ["unreserved"]
    assert [(await service.jobs.get(k)).status for k in ("800001", "800002", "800003")] == [
        "done", "done", "done"]
    assert (await service.conversations.get(turn_id)).message_id == delivered.id
    # Charged exactly once each, and nobody told a finished job was interrupted.
    for user, key in ((fake.alice, "800001"), (fake.bob, "800002")):
        entries = await service.ledger.recent(fake.guild_id, user.id)
        assert [(e.key, e.kind, e.total_tokens) for e in entries] == [(key, "charge", 1130)]
    assert not channel_notices_for(fake, fake.bob, "interrupted")
    assert await service.ledger.open_reservations() == []


@pytest.mark.slow
async def test_sigkill_mid_job_then_restart_tells_owner_and_resumes_the_queue(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    async with FakeDiscord() as fake, FakeGemini() as gemini:
        gemini.push("hang")
        async with peel_process(fake, gemini, data_dir, MAX_CONCURRENT_JOBS="1") as process:
            stuck = await fake.slash("imagine", {"prompt": "stuck"}, user=fake.alice)
            await fake.wait_until(lambda: len(gemini.requests) == 1, timeout=10)
            waiting = await fake.slash("imagine", {"prompt": "waiting"}, user=fake.bob)
            old_status = await wait_queued(fake, waiting, position=1)
            process.send_signal(signal.SIGKILL)
            await process.wait()

        gemini.latency = 1.0
        async with peel_in_process(fake, gemini, data_dir) as harness:
            service = harness.service
            # The running job's owner is told, in the channel, that nothing was charged.
            await fake.wait_until(
                lambda: bool(channel_notices_for(fake, fake.alice, INTERRUPTED_TEXT)))
            [notice] = channel_notices_for(fake, fake.alice, INTERRUPTED_TEXT)
            assert "interrupted" in notice.content and "Nothing was charged" in notice.content
            assert notice.allowed_mentions == NO_MENTIONS
            # Its placeholder no longer claims to be generating; the notice replies to it.
            placeholder = status_of(stuck)
            assert placeholder.content == INTERRUPTED_STATUS and placeholder.custom_ids == []
            assert placeholder.allowed_mentions == NO_MENTIONS
            assert notice.message_reference is not None
            assert notice.message_reference["message_id"] == str(placeholder.id)
            # The queued job runs now, shown by its old status (no second status, no Cancel),
            # which goes once the result is posted in the channel for its owner.
            await fake.wait_until(lambda: "Generating" in old_status.content, timeout=15)
            assert old_status.custom_ids == [] and old_status.allowed_mentions == NO_MENTIONS
            assert [m for m in fake.channel_messages(fake.channel_id)
                    if "Generating" in m.content or "Queued" in m.content] == [old_status]
            await fake.wait_until(lambda: bool(channel_results_for(fake, fake.bob)), timeout=15)
            await fake.wait_until(lambda: old_status.deleted)
            assert [r.prompt for r in gemini.requests] == ["stuck", "waiting"]
            assert (await service.jobs.get(str(stuck.id))).status == "interrupted"
            await fake.wait_until(lambda: not service.live.started)
            assert (await service.jobs.get(str(waiting.id))).status == "done"
            assert await service.ledger.open_reservations() == []
            stuck_entries = await service.ledger.recent(fake.guild_id, fake.alice.id)
            assert [(e.kind, e.total_tokens) for e in stuck_entries] == [("release", 0)]
            assert await integrity(harness) == "ok"


@pytest.mark.slow
async def test_sigterm_drains_the_running_job_and_keeps_the_queue(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with FakeDiscord() as fake, FakeGemini() as gemini:
        gemini.latency = 2.0
        async with peel_process(fake, gemini, data_dir, MAX_CONCURRENT_JOBS="1",
                                SHUTDOWN_GRACE="15") as process:
            running = await fake.slash("imagine", {"prompt": "running"}, user=fake.alice)
            await fake.wait_until(lambda: len(gemini.requests) == 1, timeout=10)
            queued = await fake.slash("imagine", {"prompt": "queued"}, user=fake.bob)
            old_status = await wait_queued(fake, queued, position=1)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            late = await fake.slash("imagine", {"prompt": "late"}, user=fake.owner)
            assert "restarting" in await wait_ephemeral(fake, late)
            assert result_of(running) is None  # the refusal came during the drain
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        log = stderr.decode()
        assert process.returncode == 0, log
        assert "Traceback" not in log
        # The running call finished and was posted before the process exited.
        assert [data for _, data in status_of(running).attachments] == [gemini.image]
        assert [r.prompt for r in gemini.requests] == ["running"]

        gemini.latency = 1.0
        async with peel_in_process(fake, gemini, data_dir) as harness:
            await fake.wait_until(lambda: len(gemini.requests) == 2, timeout=15)
            assert gemini.requests[-1].prompt == "queued"
            # Its old "Queued" status follows it: generating now, the Cancel button gone...
            await fake.wait_until(lambda: "Generating" in old_status.content)
            assert old_status.custom_ids == [] and old_status.allowed_mentions == NO_MENTIONS
            # ...and replaced by the result.
            await fake.wait_until(lambda: bool(channel_results_for(fake, fake.bob)), timeout=15)
            await fake.wait_until(lambda: old_status.deleted)
            await fake.wait_until(lambda: not harness.service.live.started)
            assert await harness.service.ledger.open_reservations() == []
            assert await integrity(harness) == "ok"
