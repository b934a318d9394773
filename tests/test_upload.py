"""Result images go out through aiohttp as they are: same bytes, no copy, file closed after."""

from __future__ import annotations

import os

import aiohttp
import discord
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.upload import SLICE, ImageUpload


async def test_an_image_upload_arrives_byte_for_byte_in_a_multipart_body() -> None:
    image = os.urandom(3 * SLICE + 12_345)  # several slices and a ragged end
    received: list[tuple[str | None, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            received.append((part.filename, bytes(await part.read())))  # type: ignore[union-attr]
        return web.Response(text="ok")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/upload", handler)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        upload = ImageUpload(image)
        form = aiohttp.FormData()
        form.add_field("files[0]", upload, filename="peel.png", content_type="image/png")
        async with session.post(server.make_url("/upload"), data=form) as resp:
            assert resp.status == 200
    assert received == [("peel.png", image)]


async def test_discord_file_seeks_it_for_a_retry_and_closing_drops_the_image() -> None:
    upload = ImageUpload(b"\x89PNG" + b"x" * 100)
    file = discord.File(upload, filename="peel.png")
    upload.read(50)  # as a first attempt that stopped halfway would leave it
    file.reset(seek=1)  # what discord.py does before sending again
    assert upload.tell() == 0
    file.close()  # discord.py's close leaves a file it did not open alone
    assert not upload.closed
    upload.close()
    assert upload.data == b"" and upload.closed
