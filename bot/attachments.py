"""Reading reference images from Discord attachments (the only discord-aware part of it).

Files are downloaded with Peel's own capped, timed download (never `Attachment.read()`,
which trusts the size) and validated by their bytes in `bot.images`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
import discord

from bot import images
from bot.errors import BadAttachment
from bot.models import ImageData


def usable(attachments: Sequence[discord.Attachment | None]) -> list[discord.Attachment]:
    return [a for a in attachments if a is not None]


def precheck(attachments: Sequence[discord.Attachment]) -> None:
    """Refuse on what Discord declares, before downloading anything."""
    for attachment in attachments:
        if attachment.size > images.MAX_IMAGE_BYTES:
            raise BadAttachment(attachment.filename, "it is larger than 10 MB")


async def read_references(
    session: aiohttp.ClientSession,
    attachments: Sequence[discord.Attachment],
    *,
    already: int = 0,
    limit: int = images.MAX_REFERENCE_IMAGES,
) -> tuple[list[ImageData], list[str]]:
    """Download, validate and prepare attachments as reference images.

    Files beyond the per-turn limit are not downloaded at all; the returned warnings
    name them. Any bad file raises its BadAttachment and the whole turn is refused.
    """
    kept, left_out = images.split_by_limit(list(attachments), already=already, limit=limit)
    precheck(kept)
    payloads = await asyncio.gather(*[
        images.download_capped(session, a.url, filename=a.filename) for a in kept
    ])
    prepared, warnings = await images.prepare_references(
        [(a.filename, data) for a, data in zip(kept, payloads, strict=True)],
        already=already, limit=limit,
    )
    if left_out:
        names = ", ".join(a.filename for a in left_out)
        warnings.append(f"Only {limit} images can be used per turn; left out: {names}")
    return prepared, warnings
