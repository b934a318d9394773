"""Building and running Peel: every resource opened once here and injected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import discord

from bot import codec, images
from bot.client import PeelBot, point_discord_at
from bot.errors import ProviderAuthError
from bot.pricing import PriceTable
from bot.providers import build_provider
from bot.scheduler import Scheduler
from bot.service import ImageService
from bot.settings import Settings
from bot.storage.blobs import BlobStore
from bot.storage.conversations import ConversationStore
from bot.storage.db import Database
from bot.storage.jobs import JobStore
from bot.storage.ledger import Ledger

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A problem the operator must fix; its message is the one line shown."""


@dataclass
class Runtime:
    settings: Settings
    session: aiohttp.ClientSession
    db: Database
    service: ImageService
    bot: PeelBot


def prices_from(settings: Settings) -> PriceTable:
    return PriceTable(
        input_per_million=settings.price_input_per_million,
        text_output_per_million=settings.price_text_output_per_million,
        image_output_per_million=settings.price_image_output_per_million,
    )


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, **bot_options: object) -> AsyncIterator[Runtime]:
    """Open the session and the database, build provider, service and bot; close all after."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    point_discord_at(settings.discord_api_base_url, settings.discord_gateway_url)
    # The codec, file and SQLite workers finish their C work (which releases the GIL) and
    # then wait for the GIL to hand their result back; at the default 5 ms switch interval
    # that wait lengthened every trip under load. 1 ms: loop lag p99 at 100 jobs/s 11-14 ->
    # 10-12 ms, e2e/U p50 1.036-1.046 -> 1.033-1.040 (bench/load.py, runs interleaved).
    sys.setswitchinterval(0.001)
    # aiohttp pools 100 connections by default, which silently capped provider calls below
    # MAX_CONCURRENT_JOBS: one per call it allows, plus the default 100 for downloads.
    connector = aiohttp.TCPConnector(limit=settings.max_concurrent_jobs + 100)
    async with aiohttp.ClientSession(connector=connector) as session:
        db = await Database.open(settings.database_path)
        try:
            provider = build_provider(settings, session)
            prices = prices_from(settings)
            service = ImageService(
                provider=provider,
                ledger=Ledger(db, default_limit=settings.quota_tokens_per_day, prices=prices),
                jobs=JobStore(db),
                conversations=ConversationStore(db),
                blobs=BlobStore(db, settings.data_dir / "images"),
                scheduler=Scheduler(max_concurrent=settings.max_concurrent_jobs,
                                    max_jobs_per_user=settings.max_jobs_per_user),
                prices=prices,
            )
            bot = PeelBot(settings=settings, session=session, service=service, **bot_options)
            try:
                yield Runtime(settings, session, db, service, bot)
            finally:
                if not bot.is_closed():
                    await bot.close()
        finally:
            await db.close()
            images.close_executor()
            codec.shutdown()


async def check_provider(runtime: Runtime) -> None:
    try:
        await runtime.service.provider.check_credentials()
    except ProviderAuthError as exc:
        name = runtime.settings.image_provider.upper()
        raise StartupError(
            f"the {runtime.settings.image_provider} API key was rejected (HTTP {exc.status}); "
            f"check {name}_API_KEY"
        ) from None


async def drain(runtime: Runtime) -> None:
    """Stop taking work and let started jobs finish and post within the grace period.

    Jobs that have not started stay queued (in the database) for the next start; jobs still
    running when the grace period ends are released on the next start and their owners told.
    """
    live = runtime.service.live
    live.stop_accepting()
    log.info("draining: waiting for %d started jobs", live.started)
    try:
        await asyncio.wait_for(live.wait_quiet(), runtime.settings.shutdown_grace)
    except TimeoutError:
        log.warning("%d jobs still running at shutdown; they will be released on the next "
                    "start", live.started)


async def run(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    async with open_runtime(settings) as runtime:
        await check_provider(runtime)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bot_task = asyncio.create_task(runtime.bot.start(settings.discord_token.get_secret_value()))
        stop_task = asyncio.create_task(stop.wait())
        await asyncio.wait({bot_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if bot_task.done():
            stop_task.cancel()
            exc = bot_task.exception()
            if isinstance(exc, discord.LoginFailure):
                raise StartupError("Discord rejected DISCORD_TOKEN (login failed)")
            if isinstance(exc, discord.PrivilegedIntentsRequired):
                raise StartupError("enable the MESSAGE CONTENT intent for the bot in the "
                                   "Discord developer portal")
            if exc is not None:
                raise exc
            return
        log.info("shutting down")
        await drain(runtime)
        await runtime.bot.close()
        bot_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await bot_task
