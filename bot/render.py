"""How results, statuses and refusals read in Discord (text only; no sending here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import discord

from bot.pricing import format_usd
from bot.service import Outcome
from bot.storage.ledger import Balance
from bot.upload import ImageUpload

NO_MENTIONS = discord.AllowedMentions.none()
MAX_CONTENT = 2000


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote_prompt(prompt: str, limit: int = 200) -> str:
    """The prompt as members see it: one line, clipped, markdown-neutral."""
    one_line = " ".join(prompt.split())
    return discord.utils.escape_markdown(clip(one_line, limit))


def remaining_text(balance: Balance) -> str:
    if balance.remaining is None:
        return "unlimited budget"
    return f"{max(balance.remaining, 0):,} tokens left today"


def result_content(outcome: Outcome) -> str:
    lines: list[str] = []
    if outcome.caption:
        lines.append(clip(outcome.caption.strip(), 1200))
    estimated = "" if outcome.usage.reported else " (estimated)"
    lines.append(
        f"-# “{quote_prompt(outcome.prompt, 150)}” · {outcome.usage.total:,} tokens{estimated}"
        f" · {format_usd(outcome.cost_micro_usd)} · {remaining_text(outcome.balance)}"
    )
    for warning in outcome.warnings:
        lines.append(f"-# ⚠️ {clip(warning, 300)}")
    return clip("\n".join(lines), MAX_CONTENT)


@contextmanager
def result_files(outcome: Outcome) -> Iterator[list[discord.File]]:
    """The result images as attachments, closed (their bytes let go) once sent: discord.py
    keeps sent files inside its own reference cycles until a full garbage collection."""
    uploads = [ImageUpload(image.data) for image in outcome.images]
    try:
        yield [
            discord.File(upload, filename=f"peel-{outcome.turn_id}-{i + 1}.{image.extension}")
            for i, (upload, image) in enumerate(zip(uploads, outcome.images, strict=True))
        ]
    finally:
        for upload in uploads:
            upload.close()


def queued_text(position: int) -> str:
    return f"⏳ Queued, position {position}"


GENERATING_TEXT = "🎨 Generating…"
REFUSED_TEXT = "⚠️ This request could not be completed."
STARTING_TEXT = "⏳ Preparing…"


def thread_name(prompt: str) -> str:
    name = " ".join(prompt.split())
    return clip(name, 90) or "Peel image"
