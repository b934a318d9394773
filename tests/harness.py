"""End-to-end harness: the real Peel bot, built by the production `open_runtime`, against
loopback fakes of Discord (REST, gateway websocket, CDN) and of the image provider."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import discord.gateway
import discord.http
from PIL import Image

from bot.app import Runtime, open_runtime
from bot.settings import Settings, load_settings
from tests.fakes.discord_server import FakeDiscord

_ORIGINAL_BASE = discord.http.Route.BASE
_ORIGINAL_GATEWAY = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


def png_bytes(
    width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def restore_discord_urls() -> None:
    discord.http.Route.BASE = _ORIGINAL_BASE
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = _ORIGINAL_GATEWAY


class Harness:
    """Owns a running bot; `restart()` stops it and starts a new one on the same DATA_DIR."""

    def __init__(self, discord_fake: FakeDiscord, upstream: Any, settings: Settings) -> None:
        self.discord = discord_fake
        self.upstream = upstream
        self.settings = settings
        self.runtime: Runtime | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def bot(self) -> Any:
        assert self.runtime is not None
        return self.runtime.bot

    @property
    def service(self) -> Any:
        assert self.runtime is not None
        return self.runtime.service

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.runtime = await self._stack.enter_async_context(
            open_runtime(self.settings, guild_ready_timeout=0.1)
        )
        token = self.settings.discord_token.get_secret_value()
        self._task = asyncio.create_task(self.runtime.bot.start(token))
        await self.discord.wait_until(
            lambda: (self.runtime is not None and self.runtime.bot.is_ready())
            or (self._task is not None and self._task.done()),
            timeout=15,
        )
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.bot.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
        if self._stack is not None:
            await self._stack.aclose()
        self.runtime, self._task, self._stack = None, None, None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def make_settings(discord_fake: FakeDiscord, data_dir: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "discord_token": discord_fake.token,
        "discord_api_base_url": discord_fake.base_url,
        "discord_gateway_url": discord_fake.gateway_url,
        "discord_dev_guild_id": discord_fake.guild_id,
        "data_dir": data_dir,
        "provider_timeout": 10,
        "shutdown_grace": 2,
    }
    values.update(extra)
    return load_settings(**values)


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path, upstream: Any, provider: str = "gemini", **extra: Any
) -> AsyncIterator[Harness]:
    fake = FakeDiscord()
    await fake.start()
    await upstream.start()
    keys = {
        "image_provider": provider,
        f"{provider}_api_key": upstream.api_key,
        f"{provider}_base_url": upstream.base_url,
    }
    harness = Harness(fake, upstream, make_settings(fake, tmp_path / "data", **keys, **extra))
    try:
        await harness.start()
        yield harness
    finally:
        await harness.stop()
        await upstream.close()
        await fake.close()
        restore_discord_urls()
