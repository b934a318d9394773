"""The discord.py client: built with every resource injected, nothing opened here."""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.delivery import ChannelReporter
from bot.recovery import (
    INTERRUPTED_STATUS,
    INTERRUPTED_TEXT,
    RecoveryPlan,
    abandon,
    outcome_for,
    plan_recovery,
)
from bot.service import ImageService
from bot.settings import Settings
from bot.storage.conversations import Turn
from bot.storage.jobs import JobRecord
from bot.storage.meta import MetaStore
from bot.tree import PeelTree

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.imagine",
    "cogs.edit",
    "cogs.conversation",
    "cogs.buttons",
    "cogs.usage",
    "cogs.quota",
)


def point_discord_at(api_base_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST and gateway traffic elsewhere (a REST proxy, or a test fake)."""
    if api_base_url:
        base = api_base_url.rstrip("/")
        if "/api/v" not in base:
            base += "/api/v10"
        discord.http.Route.BASE = base
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def intents() -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    # Edit turns are plain messages in threads and replies: the bot must read them.
    chosen.message_content = True
    return chosen


class PeelBot(commands.Bot):
    def __init__(
        self,
        *,
        settings: Settings,
        session: aiohttp.ClientSession,
        service: ImageService,
        **options: object,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            tree_cls=PeelTree,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            # No message cache: turns read what they need from each event's own payload,
            # and caching every result message (and copying it on each edit) costs the
            # loop thread work on every job for nothing.
            max_messages=None,
            **options,  # type: ignore[arg-type]
        )
        self.settings = settings
        self.session = session
        self.service = service
        self._recovery: RecoveryPlan | None = None

    async def setup_hook(self) -> None:
        # Sorted before the gateway connects, so no job of this run is mistaken for one
        # the last run left; acted on at the first READY, when channels are known.
        self._recovery = await plan_recovery(self.service)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self.sync_commands()

    async def sync_commands(self) -> None:
        """Dev guild: sync every start. Globally: only when the command set changed,
        because Discord allows 200 command creates a day."""
        guild_id = self.settings.discord_dev_guild_id
        if guild_id:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild_id)
            return
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(
            json.dumps(payload, sort_keys=True, default=str).encode()
        ).hexdigest()
        meta = MetaStore(self.service.jobs.db)
        if await meta.get("global_commands") == digest:
            return
        synced = await self.tree.sync()
        await meta.set("global_commands", digest)
        log.info("synced %d global commands", len(synced))

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) to %d servers", self.user, self.application_id,
                 len(self.guilds))
        plan, self._recovery = self._recovery, None
        if plan is not None:
            # Once, at the first READY: what start-up built (modules, commands, the guild
            # cache) lives as long as the process. Frozen, the garbage collector stops
            # walking it at every full collection, each of which stopped every thread for
            # up to 90 ms under load (bench/load.py).
            gc.freeze()
            await self.recover_jobs(plan)

    async def recover_jobs(self, plan: RecoveryPlan) -> None:
        """Deliver settled results, tell owners of interrupted jobs, resume queued ones."""
        for record, turn in plan.deliver:
            await self._deliver_recovered(record, turn)
        for record in plan.interrupted:
            reporter = await self._channel_reporter(record)
            if reporter is None:
                continue
            try:
                await reporter.interrupted(INTERRUPTED_TEXT, INTERRUPTED_STATUS)
            except discord.HTTPException as exc:
                log.warning("could not tell the owner of job %s: %s", record.key, exc.status)
        for record in plan.resume:
            reporter = await self._channel_reporter(record)
            if reporter is None:
                await abandon(self.service, record, "its channel is gone")
                continue
            self.service.spawn(self.service.resume(record, reporter))

    async def _deliver_recovered(self, record: JobRecord, turn: Turn) -> None:
        reporter = await self._channel_reporter(record)
        if reporter is None:
            await self.service.jobs.set_status(record.key, "failed", error="its channel is gone")
            return
        try:
            delivery = await reporter.deliver(await outcome_for(self.service, record, turn))
        except discord.HTTPException as exc:
            # Left `running`: the next start tries again.
            log.warning("could not deliver recovered job %s: %s", record.key, exc.status)
            return
        await self.service.record_delivery(record, turn.id, delivery)

    async def _channel_reporter(self, record: JobRecord) -> ChannelReporter | None:
        """Jobs from the last run have no interaction token left: report in the channel,
        through the status message the last run showed (stale until corrected)."""
        from cogs.buttons import result_view

        channel_id = record.thread_id or record.channel_id
        channel = self.get_channel(channel_id)
        if channel is None:  # e.g. an archived thread, which is not cached
            try:
                channel = await self.fetch_channel(channel_id)
            except discord.HTTPException as exc:
                log.warning("channel %s of job %s is gone (%s); cannot report to its owner",
                            channel_id, record.key, exc.status)
                return None
        if not isinstance(channel, discord.abc.Messageable):
            return None
        status = None
        if record.status_message_id is not None:
            status = discord.PartialMessage(channel=channel, id=record.status_message_id)
        return ChannelReporter(
            channel, owner_id=record.user_id, view_factory=result_view, job_key=record.key,
            status=status,
            on_status=functools.partial(self.service.jobs.set_status_message, record.key),
        )

    async def on_error(self, event_method: str, /, *args: object, **kwargs: object) -> None:
        log.exception("unhandled error in %s", event_method)
