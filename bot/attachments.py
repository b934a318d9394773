"""Reading reference images from Discord attachments (the only discord-aware part of it).

Files are downloaded with Peel's own capped, timed download (never `Attachment.read()`,
which trusts the size) and validated by their bytes in `bot.images`.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
import discord

from bot import images
from bot.models import ImageData


def sources(attachments: Sequence[discord.Attachment]) -> list[images.SourceFile]:
    """What the intake needs to know of each attachment; the size is Discord's claim only."""
    return [images.SourceFile(a.filename, a.url, declared_size=a.size) for a in attachments]


async def read_references(
    session: aiohttp.ClientSession,
    attachments: Sequence[discord.Attachment],
    *,
    already: int = 0,
    limit: int = images.MAX_REFERENCE_IMAGES,
) -> tuple[list[ImageData], list[str]]:
    """Download, validate and prepare attachments as reference images.

    Files beyond the per-turn limit (`already` counts the image being edited) are not
    downloaded at all; the returned warnings name them. Any bad file raises its
    BadAttachment and the whole turn is refused. Goes through `images.fetch_references`,
    which holds only a few raw downloads at once however many files a turn has.
    """
    return await images.fetch_references(
        session, sources(attachments), already=already, limit=limit
    )
