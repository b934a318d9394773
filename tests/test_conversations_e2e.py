"""Edit conversations driven as a member would: thread messages, replies, mentions, /edit and
the Edit image menu, through the real discord.py client, real HTTP and the fake Discord CDN.

Every upstream answer carries its own image (`distinct_answers`), so each test can tell
which earlier result the bot sent back upstream for an edit.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import discord
import pytest
from PIL import Image

from bot.attachments import read_references
from bot.images import MAX_REFERENCE_IMAGES
from tests.fakes.discord_models import JSON, FakeAttachment, FakeInteraction, FakeMessage
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeGemini
from tests.harness import Harness, png_bytes

# What "allowed mentions: none" looks like on the wire. A reply sent with
# `mention_author=False` carries an explicit `replied_user: false`, which pings no one either.
NONE_MENTIONS: JSON = {"parse": []}
NONE_MENTIONS_REPLY: JSON = {"parse": [], "replied_user": False}
T = TypeVar("T")


# ---------------------------------------------------------------------------- helpers


def distinct_answers(gemini: FakeGemini) -> list[bytes]:
    """Make answer n carry its own PNG (set as `gemini.image` just before it is sent).

    Returns the list the answers are appended to: answers[i] answered gemini.requests[i].
    """
    answers: list[bytes] = []
    original = gemini._answer

    def answer(scenario: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        n = len(answers) + 1
        gemini.image = png_bytes(16 + n, 16, ((40 * n) % 256, (90 * n) % 256, 200))
        answers.append(gemini.image)
        return original(scenario, body, model)

    gemini._answer = answer  # type: ignore[method-assign]
    return answers


async def eventually(
    fake: FakeDiscord, probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0
) -> T:
    """Poll an async probe (e.g. a database read) until it returns something."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := await probe()) is None:
        if loop.time() >= deadline:
            raise AssertionError(f"probe never answered within {timeout}s\n{fake.describe()}")
        await asyncio.sleep(0.01)
    return value


async def job_done(harness: Harness, key: int | str) -> None:
    """Wait until the job is finished in the database (its result message recorded)."""

    async def probe() -> bool | None:
        record = await harness.service.jobs.get(str(key))
        return True if record is not None and record.status == "done" else None

    await eventually(harness.discord, probe)


def bot_messages(fake: FakeDiscord, channel_id: int) -> list[FakeMessage]:
    return [m for m in fake.channel_messages(channel_id) if m.author_id == fake.bot_user_id]


def replies_to(fake: FakeDiscord, message: FakeMessage) -> list[FakeMessage]:
    """The bot's visible messages answering `message` (Discord replies to it)."""
    return [
        m for m in bot_messages(fake, message.channel_id)
        if m.message_reference is not None
        and int(m.message_reference["message_id"]) == message.id
    ]


async def reply_result(harness: Harness, message: FakeMessage) -> FakeMessage:
    """The result the bot posted as a reply to a member's message, once its job is done."""
    fake = harness.discord

    def posted() -> bool:
        return any(m.attachments for m in replies_to(fake, message))

    await fake.wait_until(posted, what=f"a result replying to {message.content!r}")
    await job_done(harness, message.id)
    result = next(m for m in replies_to(fake, message) if m.attachments)
    assert result.allowed_mentions in (NONE_MENTIONS, NONE_MENTIONS_REPLY)
    return result


async def reply_refusal(harness: Harness, message: FakeMessage) -> FakeMessage:
    fake = harness.discord

    def refused() -> bool:
        return any(m.content.startswith("⚠️") for m in replies_to(fake, message))

    await fake.wait_until(refused, what=f"a refusal replying to {message.content!r}")
    refusal = next(m for m in replies_to(fake, message) if m.content.startswith("⚠️"))
    assert refusal.allowed_mentions in (NONE_MENTIONS, NONE_MENTIONS_REPLY)
    assert not refusal.attachments
    return refusal


async def interaction_result(harness: Harness, interaction: FakeInteraction) -> FakeMessage:
    fake = harness.discord

    def has_result() -> bool:
        return any(m.attachments for m in interaction.messages())

    await fake.wait_until(has_result, what=f"a result for {interaction!r}")
    await job_done(harness, interaction.id)
    result = next(m for m in interaction.messages() if m.attachments)
    assert result.allowed_mentions == NONE_MENTIONS
    return result


async def ephemeral_refusal(harness: Harness, interaction: FakeInteraction) -> FakeMessage:
    fake = harness.discord

    def public() -> list[FakeMessage]:
        return [m for m in interaction.messages() if not m.ephemeral and not m.deleted]

    def refused() -> bool:
        told = any(m.ephemeral and m.content.startswith("⚠️") for m in interaction.messages())
        # ... and nothing public is left behind: the "thinking" placeholder is gone.
        return told and not public()

    await fake.wait_until(refused, what=f"only an ephemeral refusal for {interaction!r}")
    refusal = next(m for m in interaction.messages() if m.ephemeral)
    assert refusal.allowed_mentions == NONE_MENTIONS
    return refusal


@dataclass
class Conversation:
    """An /imagine result in the channel and the thread started on it."""

    result: FakeMessage
    thread_id: int
    image: bytes


async def start_conversation(harness: Harness, prompt: str = "a house on a hill") -> Conversation:
    fake, gemini = harness.discord, harness.upstream
    interaction = await fake.slash("imagine", {"prompt": prompt}, user=fake.alice)
    result = await interaction_result(harness, interaction)
    assert result.channel_id == fake.channel_id
    await fake.wait_until(lambda: result.id in fake.threads, what="a thread on the result")
    [(_, image)] = result.attachments
    assert image == gemini.image
    return Conversation(result=result, thread_id=fake.threads[result.id].id, image=image)


def sent_images(gemini: FakeGemini, index: int = -1) -> list[bytes]:
    return [data for _, data in gemini.requests[index].images]


async def modal_input_id(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    """The custom_id of the modal's one text input, once the bot has answered with it."""
    await fake.wait_until(lambda: bool(interaction.callbacks), what="an answer to the menu")
    assert interaction.callbacks[0]["type"] == 9
    assert interaction.modal is not None, "the interaction was not answered with a modal"
    ids = []
    for top in interaction.modal["components"]:
        inner = [top["component"]] if top.get("type") == 18 else top["components"]
        ids += [c["custom_id"] for c in inner if c.get("type") == 4]
    assert len(ids) == 1, interaction.modal
    return str(ids[0])


@dataclass(frozen=True)
class Spend:
    spent: int
    reserved: int


async def spend(harness: Harness) -> Spend:
    fake = harness.discord
    balance = await harness.service.ledger.balance(fake.guild_id, fake.alice.id)
    return Spend(balance.spent, balance.reserved)


# ---------------------------------------------------------------------------- thread edits


async def test_thread_messages_edit_the_latest_image(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    answers = distinct_answers(gemini)
    talk = await start_conversation(gemini_bot)

    purple = await fake.user_message(
        "make the sky purple", user=fake.alice, channel_id=talk.thread_id
    )
    first_edit = await reply_result(gemini_bot, purple)
    assert gemini.requests[-1].prompt == "make the sky purple"
    assert sent_images(gemini) == [talk.image]
    assert first_edit.channel_id == talk.thread_id
    assert first_edit.attachments == [(first_edit.files[0].filename, answers[1])]
    assert "tokens" in first_edit.content

    cat = await fake.user_message("add a cat", user=fake.alice, channel_id=talk.thread_id)
    second_edit = await reply_result(gemini_bot, cat)
    assert gemini.requests[-1].prompt == "add a cat"
    assert sent_images(gemini) == [answers[1]]  # built on the first edit, not the original
    assert [data for _, data in second_edit.attachments] == [answers[2]]
    assert second_edit.channel_id == talk.thread_id


async def test_quick_thread_messages_run_in_order_each_on_the_last(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    answers = distinct_answers(gemini)
    talk = await start_conversation(gemini_bot)
    # The first message carries a reference to download, so it is the slower one to start.
    extra = fake.add_attachment(png_bytes(12, 12, (5, 5, 5)), "texture.png", "image/png")
    first = await fake.user_message(
        "make it night", user=fake.alice, channel_id=talk.thread_id, attachments=[extra]
    )
    second = await fake.user_message("add stars", user=fake.alice, channel_id=talk.thread_id)
    night = await reply_result(gemini_bot, first)
    stars = await reply_result(gemini_bot, second)

    prompts = [r.prompt for r in gemini.requests[1:]]
    assert prompts == ["make it night", "add stars"]
    assert sent_images(gemini, 1) == [talk.image, png_bytes(12, 12, (5, 5, 5))]
    assert sent_images(gemini, 2) == [answers[1]]
    assert [d for _, d in night.attachments] == [answers[1]]
    assert [d for _, d in stars.attachments] == [answers[2]]


async def test_a_third_quick_thread_message_is_held_to_the_job_limit(
    gemini_bot: Harness,
) -> None:
    """Waiting in line keeps message order; it must not lift MAX_JOBS_PER_USER (2)."""
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    talk = await start_conversation(gemini_bot)
    gemini.latency = 0.3
    sent = [
        await fake.user_message(text, user=fake.alice, channel_id=talk.thread_id)
        for text in ("make it night", "add stars", "add a moon")
    ]
    refusal = await reply_refusal(gemini_bot, sent[2])
    assert "already have 2 image jobs queued or running" in refusal.content
    await reply_result(gemini_bot, sent[0])
    await reply_result(gemini_bot, sent[1])
    assert [r.prompt for r in gemini.requests[1:]] == ["make it night", "add stars"]
    assert (await spend(gemini_bot)).reserved == 0


async def test_other_members_messages_in_a_thread_are_left_alone(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    talk = await start_conversation(gemini_bot)
    before = len(gemini.requests)
    await fake.user_message("make it green", user=fake.bob, channel_id=talk.thread_id)
    await fake.user_message("looks great", user=fake.bob, channel_id=talk.thread_id,
                            mention_bot=True)
    # The owner's next message is answered; by then bob's were long handled (and ignored).
    mine = await fake.user_message("make it blue", user=fake.alice, channel_id=talk.thread_id)
    await reply_result(gemini_bot, mine)
    assert len(gemini.requests) == before + 1
    assert gemini.requests[-1].prompt == "make it blue"
    bot_in_thread = bot_messages(fake, talk.thread_id)
    assert all(
        m.message_reference is None or int(m.message_reference["message_id"]) == mine.id
        for m in bot_in_thread
    ), bot_in_thread


async def test_thread_message_attachments_are_extra_references(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    distinct_answers(gemini)
    talk = await start_conversation(gemini_bot)
    hat, scarf = png_bytes(20, 20, (1, 1, 1)), png_bytes(22, 20, (2, 2, 2))
    message = await fake.user_message(
        "put this hat and scarf on the house", user=fake.alice, channel_id=talk.thread_id,
        attachments=[fake.add_attachment(hat, "hat.png", "image/png"),
                     fake.add_attachment(scarf, "scarf.png", "image/png")],
    )
    await reply_result(gemini_bot, message)
    request = gemini.requests[-1]
    assert request.prompt == "put this hat and scarf on the house"
    assert request.images == [("image/png", talk.image), ("image/png", hat), ("image/png", scarf)]


# ---------------------------------------------------------------------------- replies


async def test_replies_edit_the_replied_image_even_an_older_one(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    answers = distinct_answers(gemini)
    talk = await start_conversation(gemini_bot)
    purple = await fake.user_message("make the sky purple", user=fake.alice,
                                     channel_id=talk.thread_id)
    first_edit = await reply_result(gemini_bot, purple)
    cat = await fake.user_message("add a cat", user=fake.alice, channel_id=talk.thread_id)
    await reply_result(gemini_bot, cat)

    # In the channel: a reply to the original result branches from it, not the thread's latest.
    branch = await fake.user_message("make it winter", user=fake.alice, reply_to=talk.result.id)
    winter = await reply_result(gemini_bot, branch)
    assert gemini.requests[-1].prompt == "make it winter"
    assert sent_images(gemini) == [talk.image]
    assert winter.channel_id == fake.channel_id
    assert [d for _, d in winter.attachments] == [answers[3]]

    # In the thread: a reply to the first edit's result edits that one, not "add a cat".
    dog = await fake.user_message("add a dog instead", user=fake.alice,
                                  channel_id=talk.thread_id, reply_to=first_edit.id)
    with_dog = await reply_result(gemini_bot, dog)
    assert gemini.requests[-1].prompt == "add a dog instead"
    assert sent_images(gemini) == [answers[1]]
    assert with_dog.channel_id == talk.thread_id

    # And a reply to the branch's result builds on the branch.
    snow = await fake.user_message("more snow", user=fake.alice, reply_to=winter.id)
    await reply_result(gemini_bot, snow)
    assert sent_images(gemini) == [answers[3]]


# ---------------------------------------------------------------------------- /edit and the menu


async def test_slash_edit_sends_uploaded_images_in_order(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    photo, style = png_bytes(40, 30, (10, 20, 30)), png_bytes(30, 40, (40, 50, 60))
    interaction = await fake.slash("edit", {
        "image": fake.add_attachment(photo, "photo.png", "image/png"),
        "image2": fake.add_attachment(style, "style.png", "image/png"),
        "prompt": "paint the photo in this style",
    }, user=fake.alice)
    result = await interaction_result(gemini_bot, interaction)
    request = gemini.requests[-1]
    assert request.prompt == "paint the photo in this style"
    assert request.images == [("image/png", photo), ("image/png", style)]
    assert [d for _, d in result.attachments] == [gemini.image]
    await fake.wait_until(lambda: result.id in fake.threads, what="a thread on the result")


async def test_edit_image_menu_on_a_members_photo(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    photo = png_bytes(50, 40, (70, 80, 90))
    posted = await fake.user_message(
        "my cat", user=fake.bob,
        attachments=[fake.add_attachment(photo, "cat.png", "image/png")],
    )
    menu = await fake.message_command("Edit image", posted.id, user=fake.alice)
    field = await modal_input_id(fake, menu)
    submit = await fake.submit_modal(menu, {field: "give the cat a crown"})
    result = await interaction_result(gemini_bot, submit)
    assert gemini.requests[-1].prompt == "give the cat a crown"
    assert sent_images(gemini) == [photo]
    assert [d for _, d in result.attachments] == [gemini.image]


async def test_edit_image_menu_on_a_result_uses_the_stored_image(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    distinct_answers(gemini)
    talk = await start_conversation(gemini_bot)
    fake.expire_cdn()
    cdn_before = len(fake.cdn_requests)
    menu = await fake.message_command("Edit image", talk.result.id, user=fake.alice)
    field = await modal_input_id(fake, menu)
    submit = await fake.submit_modal(menu, {field: "turn it into a castle"})
    await interaction_result(gemini_bot, submit)
    assert gemini.requests[-1].prompt == "turn it into a castle"
    assert sent_images(gemini) == [talk.image]
    assert fake.cdn_requests[cdn_before:] == []  # the stored copy, not Discord's


async def test_edit_image_menu_on_a_message_without_images_refuses(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    posted = await fake.user_message("just words", user=fake.bob)
    menu = await fake.message_command("Edit image", posted.id, user=fake.alice)
    await fake.wait_until(lambda: bool(menu.callbacks))
    assert menu.modal is None
    refusal = await ephemeral_refusal(gemini_bot, menu)
    assert "no image" in refusal.content
    assert gemini.requests == []


# ---------------------------------------------------------------------------- mentions


async def test_mentioning_the_bot_starts_a_new_conversation(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    answers = distinct_answers(gemini)
    ask = await fake.user_message("a lighthouse at dusk", user=fake.alice, mention_bot=True)
    result = await reply_result(gemini_bot, ask)
    assert gemini.requests[-1].prompt == "a lighthouse at dusk"
    assert sent_images(gemini) == []
    assert result.channel_id == fake.channel_id
    await fake.wait_until(lambda: result.id in fake.threads, what="a thread on the result")
    await job_done(gemini_bot, ask.id)

    # The new thread is a conversation like any other.
    more = await fake.user_message("add a ship", user=fake.alice, channel_id=result.id)
    await reply_result(gemini_bot, more)
    assert sent_images(gemini) == [answers[0]]

    sketch = png_bytes(30, 30, (9, 8, 7))
    guided = await fake.user_message(
        "finish this sketch", user=fake.alice, mention_bot=True,
        attachments=[fake.add_attachment(sketch, "sketch.png", "image/png")],
    )
    second = await reply_result(gemini_bot, guided)
    assert gemini.requests[-1].prompt == "finish this sketch"
    assert sent_images(gemini) == [sketch]
    await fake.wait_until(lambda: second.id in fake.threads, what="a second new thread")


async def test_a_reply_that_pings_the_bot_is_not_a_mention(gemini_bot: Harness) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    ask = await fake.user_message(
        "use this", user=fake.alice, mention_bot=True,
        attachments=[fake.add_attachment(b"plain text", "notes.png", "image/png")],
    )
    refusal = await reply_refusal(gemini_bot, ask)
    # Discord puts the replied-to author in `mentions` when a reply pings: that is no request.
    thanks = await fake.user_message("oh ok, thanks", user=fake.alice, reply_to=refusal.id,
                                     ping_reply=True)
    assert fake.bot_user_id in thanks.mention_ids
    # A real mention written after it is answered, so the reply was handled (and ignored).
    ask_again = await fake.user_message("a lighthouse", user=fake.alice, mention_bot=True)
    await reply_result(gemini_bot, ask_again)
    assert [r.prompt for r in gemini.requests] == ["a lighthouse"]
    assert replies_to(fake, thanks) == []


# ---------------------------------------------------------------------------- restart


@pytest.mark.parametrize("archived", [False, True], ids=["active", "archived"])
async def test_a_thread_goes_on_after_a_restart_with_expired_links(
    gemini_bot: Harness, archived: bool
) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    answers = distinct_answers(gemini)
    talk = await start_conversation(gemini_bot)
    purple = await fake.user_message("make the sky purple", user=fake.alice,
                                     channel_id=talk.thread_id)
    await reply_result(gemini_bot, purple)

    # A quiet thread is archived by Discord; the new session is not told about it.
    fake.threads[talk.thread_id].archived = archived
    await gemini_bot.restart()
    fake.expire_cdn()
    cdn_before = len(fake.cdn_requests)

    cat = await fake.user_message("add a cat", user=fake.alice, channel_id=talk.thread_id)
    result = await reply_result(gemini_bot, cat)
    assert gemini.requests[-1].prompt == "add a cat"
    assert sent_images(gemini) == [answers[1]]
    assert result.channel_id == talk.thread_id
    assert fake.cdn_requests[cdn_before:] == []

    # Replies to results posted before the restart still work too.
    branch = await fake.user_message("make it winter", user=fake.alice, reply_to=talk.result.id)
    await reply_result(gemini_bot, branch)
    assert sent_images(gemini) == [answers[0]]


# ---------------------------------------------------------------------------- refusals


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: ~50 KB that decode to 400 MP."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(
        b"IEND", b""
    )


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    return data[: len(data) // 2]


@functools.cache
def big_image() -> bytes:
    """A real PNG of just over 11 MB (random pixels do not compress)."""
    side = 2000
    raw = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    raw.save(buffer, format="PNG", compress_level=0)
    data = buffer.getvalue()
    assert len(data) > 11 * 1024 * 1024, len(data)
    return data


class UnderstatedAttachment(FakeAttachment):
    """An attachment whose declared size (in the payload Discord sends) is a lie."""

    def payload(self, base_url: str) -> JSON:
        return {**super().payload(base_url), "size": 1024}


def understated(fake: FakeDiscord, data: bytes, filename: str) -> JSON:
    payload = fake.add_attachment(data, filename, "image/png")
    original = fake.attachments[int(payload["id"])]
    fake.attachments[original.id] = UnderstatedAttachment(
        id=original.id, filename=filename, data=data, content_type="image/png",
        channel_id=original.channel_id,
    )
    return fake.attachments[original.id].payload(fake.base_url)


@dataclass(frozen=True)
class BadInput:
    filename: str
    make: Callable[[FakeDiscord, str], JSON]
    reason: str
    downloaded: bool = True


BAD_INPUTS = [
    BadInput("notes.png", lambda f, n: f.add_attachment(b"just some text\n" * 20, n, "image/png"),
             "it isn't an image (PNG, JPEG or WebP)"),
    BadInput("huge.png", lambda f, n: f.add_attachment(big_image(), n, "image/png"),
             "it is larger than 10 MB", downloaded=False),
    BadInput("sneaky.png", lambda f, n: understated(f, big_image(), n), "it is larger than 10 MB"),
    BadInput("bomb.png", lambda f, n: f.add_attachment(bomb_png(), n, "image/png"),
             "it is too large in pixels (20000×20000; the limit is 50 megapixels)"),
    BadInput("cut.jpg", lambda f, n: f.add_attachment(truncated_jpeg(), n, "image/jpeg"),
             "the image data is truncated or corrupt"),
]


def cdn_hits(fake: FakeDiscord, filename: str, since: int) -> int:
    return sum(path.endswith(f"/{filename}") for path in fake.cdn_requests[since:])


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.filename for b in BAD_INPUTS])
async def test_bad_upload_to_slash_edit_is_refused_free(gemini_bot: Harness, bad: BadInput) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    requests, cdn, before = len(gemini.requests), len(fake.cdn_requests), await spend(gemini_bot)
    good = fake.add_attachment(png_bytes(), "fine.png", "image/png")
    interaction = await fake.slash("edit", {
        "image": good, "image2": bad.make(fake, bad.filename), "prompt": "make it pop",
    }, user=fake.alice)
    refusal = await ephemeral_refusal(gemini_bot, interaction)
    assert refusal.content == f"⚠️ `{bad.filename}` can't be used: {bad.reason}"
    assert len(gemini.requests) == requests
    assert await spend(gemini_bot) == before
    assert cdn_hits(fake, bad.filename, cdn) == int(bad.downloaded)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.filename for b in BAD_INPUTS])
async def test_bad_attachment_in_a_thread_is_refused_free(
    gemini_bot: Harness, bad: BadInput
) -> None:
    fake, gemini = gemini_bot.discord, gemini_bot.upstream
    talk = await start_conversation(gemini_bot)
    requests, before = len(gemini.requests), await spend(gemini_bot)
    message = await fake.user_message(
        "use this", user=fake.alice, channel_id=talk.thread_id,
        attachments=[bad.make(fake, bad.filename)],
    )
    refusal = await reply_refusal(gemini_bot, message)
    assert refusal.content == f"⚠️ `{bad.filename}` can't be used: {bad.reason}"
    assert refusal.channel_id == talk.thread_id
    assert len(gemini.requests) == requests
    assert await spend(gemini_bot) == before


async def test_references_past_fourteen_are_left_out_and_named(gemini_bot: Harness) -> None:
    """Discord caps a message at 10 attachments and a command at 3, so no member can reach
    15 images in one turn (10 + the image being edited = 11). The rule is proved where it
    lives: the glue's `read_references`, with real attachments on the fake CDN."""
    fake = gemini_bot.discord
    pictures = [png_bytes(10 + i, 10, (i, i, i)) for i in range(MAX_REFERENCE_IMAGES)]
    payloads = [
        fake.add_attachment(data, f"ref{i:02}.png", "image/png") for i, data in enumerate(pictures)
    ]
    state = gemini_bot.bot._connection
    attachments = [discord.Attachment(data=p, state=state) for p in payloads]  # type: ignore[arg-type]
    cdn = len(fake.cdn_requests)
    used, warnings = await read_references(gemini_bot.bot.session, attachments, already=1)
    assert [image.data for image in used] == pictures[:13]
    assert len(warnings) == 1 and "ref13.png" in warnings[0]
    assert "ref12.png" not in warnings[0]
    assert cdn_hits(fake, "ref13.png", cdn) == 0  # never downloaded
