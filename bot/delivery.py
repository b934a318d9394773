"""Reporters: how a job shows its progress and result in Discord.

`InteractionReporter` answers through the interaction's own message (defer, status edits,
the result) while its token is valid, and falls back to a plain channel message replying
to the owner once the 15-minute token has expired, so a slow job is never lost.
`ChannelReporter` serves message-triggered turns (thread edits, replies, mentions) and
jobs resumed after a restart, which have no interaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import aiohttp
import discord

from bot import render
from bot.contract import Delivery, Outcome
from bot.render import NO_MENTIONS

log = logging.getLogger(__name__)

# Status edits are throttled: Discord rate-limits message edits per channel/webhook.
STATUS_INTERVAL = 1.5
# Stop using the interaction token this long before it expires.
TOKEN_MARGIN = 30.0

CANCELLED_TEXT = "🚫 Cancelled. Nothing was charged."
HANDOFF_NOTE = "-# Still working: the result will be posted in this channel."

ViewFactory = Callable[[Outcome], discord.ui.View]
StatusMessage = discord.Message | discord.PartialMessage


class Status(NamedTuple):
    text: str
    cancel_key: str | None = None  # show the owner's Cancel button for this job


def _status_view(status: Status) -> discord.ui.View | None:
    """The Cancel button while queued; None (no buttons) otherwise."""
    if status.cancel_key is None:
        return None
    from cogs.buttons import cancel_view  # the glue's buttons; imported late (no cycle)

    return cancel_view(status.cancel_key)


async def _no_edit(status: Status) -> None:
    return None


class _StatusThrottle:
    """Coalesces status updates: at most one edit per interval, always the latest status.

    An urgent status (generating has started) skips the wait: it takes the Cancel button
    away, and it comes once per job, so it cannot strain Discord's rate limits.
    """

    def __init__(
        self, edit: Callable[[Status], Awaitable[None]], interval: float = STATUS_INTERVAL
    ) -> None:
        self._edit = edit
        self._interval = interval
        self._pending: Status | None = None
        self._urgent = False
        self._wake = asyncio.Event()
        self._shown: Status | None = None
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def shown(self) -> Status | None:
        return self._shown

    def set(self, status: Status, *, urgent: bool = False) -> None:
        if self.closed or status == self._shown:
            return
        self._pending = status
        if urgent:
            # Only an urgent status cuts the wait short. Waking the flusher for every new
            # queue position made a long queue cost a loop pass per waiter per grant.
            self._urgent = True
            self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending is not None and not self.closed:
            wait = self._last + self._interval - time.monotonic()
            if wait > 0 and not self._urgent:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            status, self._pending, self._urgent = self._pending, None, False
            self._last = time.monotonic()
            self._shown = status
            try:
                await self._edit(status)
            except (discord.HTTPException, aiohttp.ClientError) as exc:
                # A status line is cosmetic: the result or refusal still follows.
                log.debug("status edit failed: %r", exc)

    async def close(self) -> None:
        self.closed = True
        # The edit is the reporter's own method: dropping it breaks the reporter <->
        # throttle cycle, so a finished job's reporter, interaction and member are freed
        # at once instead of waiting for a full garbage collection.
        self._edit = _no_edit
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


def _thread_starter(
    message: discord.Message, outcome: Outcome
) -> Callable[[], Awaitable[int | None]] | None:
    """What starts the result's conversation thread, if it gets one. It keeps only the
    message and the thread's name, not the outcome and its images."""
    if not outcome.start_thread or not isinstance(message.channel, discord.TextChannel):
        return None
    name = render.thread_name(outcome.prompt)

    async def start() -> int | None:
        try:
            thread = await message.create_thread(name=name, auto_archive_duration=1440)
        except discord.HTTPException as exc:
            log.warning("could not start a thread on %s: %s", message.id, exc.status)
            return None
        return thread.id

    return start


class ChannelReporter:
    """Progress and result as ordinary messages in a channel or thread."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        owner_id: int,
        view_factory: ViewFactory,
        reply_to: discord.Message | discord.PartialMessage | None = None,
        announce: bool = True,
        job_key: str | None = None,
        status: StatusMessage | None = None,
        on_status: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.channel = channel
        self.owner_id = owner_id
        self.view_factory = view_factory
        self.reply_to = reply_to
        self.announce = announce
        # A message-triggered turn is keyed by the message that asked for it.
        if job_key is None and reply_to is not None:
            job_key = str(reply_to.id)
        self.job_key = job_key
        # A status message an earlier run left is taken over: edited, never posted again.
        self._status = status
        # Told the id of each status message posted, so the next start can find it.
        self._on_status = on_status
        self._throttle = _StatusThrottle(self._show)

    async def _edit_status(self, text: str, view: discord.ui.View | None) -> bool:
        """Edit the status message; False (and forget it) if someone deleted it."""
        if self._status is None:
            return False
        try:
            await self._status.edit(content=text, view=view, allowed_mentions=NO_MENTIONS)
        except discord.NotFound:
            self._status = None
            return False
        return True

    async def _show(self, status: Status) -> None:
        view = _status_view(status)
        if await self._edit_status(status.text, view):
            return
        if not self.announce:
            return
        kwargs: dict[str, object] = {"allowed_mentions": NO_MENTIONS}
        if view is not None:
            kwargs["view"] = view
        if self.reply_to is not None:
            kwargs.update(reference=self.reply_to, mention_author=False)
        self._status = await self.channel.send(status.text, **kwargs)  # type: ignore[call-overload]
        if self._on_status is not None:
            await self._on_status(self._status.id)

    def queued(self, position: int) -> None:
        self._throttle.set(Status(render.queued_text(position), self.job_key))

    async def started(self) -> None:
        self._throttle.set(Status(render.GENERATING_TEXT), urgent=True)

    async def cancelled(self) -> None:
        await self._throttle.close()

    async def deliver(self, outcome: Outcome) -> Delivery:
        await self._throttle.close()
        content = render.result_content(outcome)
        if self.reply_to is None:
            content = render.clip(f"<@{self.owner_id}> {content}", render.MAX_CONTENT)
        kwargs: dict[str, object] = {
            "content": content, "view": self.view_factory(outcome),
            "allowed_mentions": NO_MENTIONS,
        }
        if self.reply_to is not None:
            kwargs.update(reference=self.reply_to, mention_author=False)
        with render.result_files(outcome) as files:
            message = await self.channel.send(files=files, **kwargs)  # type: ignore[call-overload]
        await self._drop_status()
        thread_id = self.channel.id if isinstance(self.channel, discord.Thread) else None
        return Delivery(message.id, thread_id=thread_id,
                        start_thread=_thread_starter(message, outcome))

    async def refuse(self, message: str) -> None:
        await self._throttle.close()
        text = render.clip(f"⚠️ {message}", render.MAX_CONTENT)
        if await self._edit_status(text, None):
            return
        if self.reply_to is not None:
            await self.channel.send(text, reference=self.reply_to, mention_author=False,
                                    allowed_mentions=NO_MENTIONS)
        else:
            await self.channel.send(f"<@{self.owner_id}> {text}", allowed_mentions=NO_MENTIONS)

    async def interrupted(self, notice: str, status_text: str) -> None:
        """A job of an earlier run that will not finish: its status stops promising progress
        (`status_text`, no Cancel button) and a new message, replying to it, names the owner."""
        await self._throttle.close()
        kwargs: dict[str, object] = {"allowed_mentions": NO_MENTIONS}
        try:
            if self._status is not None and await self._edit_status(status_text, None):
                # A reply to Peel's own message: there is no author to ping.
                kwargs["reference"] = self._status.to_reference(fail_if_not_exists=False)
        except discord.HTTPException as exc:
            log.info("could not correct the old status of job %s: %s", self.job_key, exc.status)
        text = render.clip(f"<@{self.owner_id}> ⚠️ {notice}", render.MAX_CONTENT)
        await self.channel.send(text, **kwargs)  # type: ignore[call-overload]

    async def _drop_status(self) -> None:
        if self._status is not None:
            try:
                await self._status.delete()
            except discord.HTTPException:
                pass
            self._status = None


class InteractionReporter:
    """Progress and result through an application command's own response."""

    # Seconds before the token's 15-minute expiry at which Peel stops using it.
    token_margin: float = TOKEN_MARGIN

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        view_factory: ViewFactory,
        job_key: str | None = None,
        placeholder_id: int | None = None,
    ) -> None:
        self.interaction = interaction
        self.view_factory = view_factory
        # The deferred response's id: once the token is gone, the channel fallback still
        # corrects or removes it through the channel, so it never keeps saying "working".
        self.placeholder_id = placeholder_id
        # An interaction turn is keyed by its interaction id.
        self.job_key = job_key if job_key is not None else str(interaction.id)
        self._throttle = _StatusThrottle(self._show)
        self._handoff: asyncio.Task[None] | None = None
        self._handed_off = False
        self._queued = False  # a queue position was ever shown (or about to be)

    def _token_left(self) -> float:
        """Seconds the token may still be used (Peel's margin kept)."""
        remaining = (self.interaction.expires_at - discord.utils.utcnow()).total_seconds()
        return remaining - self.token_margin

    def _token_alive(self) -> bool:
        return not self._handed_off and self._token_left() > 0

    async def _show(self, status: Status) -> None:
        if self._token_alive():
            await self.interaction.edit_original_response(
                content=status.text, view=_status_view(status), allowed_mentions=NO_MENTIONS
            )

    def queued(self, position: int) -> None:
        self._watch_token()
        self._queued = True
        self._throttle.set(Status(render.queued_text(position), self.job_key))

    async def started(self) -> None:
        """A job that waited says it is generating now, which also takes its Cancel button
        away. One that never waited keeps the deferred "thinking…" placeholder, which says
        as much already: no edit (a webhook PATCH and its gateway echo per job)."""
        self._watch_token()
        if self._queued:
            self._throttle.set(Status(render.GENERATING_TEXT), urgent=True)

    async def cancelled(self) -> None:
        await self._stop()

    def _watch_token(self) -> None:
        if self._handoff is None:
            self._handoff = asyncio.create_task(self._hand_off())

    async def _hand_off(self) -> None:
        """Before the token expires, its last edit says where the result will appear."""
        left = self._token_left()
        await asyncio.sleep(max(0.0, left))
        self._handed_off = True
        shown = self._throttle.shown
        await self._throttle.close()
        if left <= 0:
            return  # already within the margin: the token is not used again
        text = f"{shown.text if shown else render.GENERATING_TEXT}\n{HANDOFF_NOTE}"
        try:
            await self.interaction.edit_original_response(
                content=text, view=_status_view(shown) if shown else None,
                allowed_mentions=NO_MENTIONS,
            )
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.debug("could not hand the status over to the channel: %r", exc)

    async def _stop(self) -> None:
        """The job has ended: no more status edits, and no hand-over."""
        handoff, self._handoff = self._handoff, None
        if handoff is not None and not handoff.done():
            handoff.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handoff
        await self._throttle.close()

    def _fallback(self) -> ChannelReporter:
        channel = self.interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise RuntimeError("interaction has no messageable channel")
        placeholder = None
        if self.placeholder_id is not None and isinstance(
            channel, discord.TextChannel | discord.Thread
        ):
            placeholder = channel.get_partial_message(self.placeholder_id)
        return ChannelReporter(channel, owner_id=self.interaction.user.id,
                               view_factory=self.view_factory, job_key=self.job_key,
                               status=placeholder)

    async def deliver(self, outcome: Outcome) -> Delivery:
        await self._stop()
        if self._token_alive():
            try:
                with render.result_files(outcome) as files:
                    message = await self.interaction.edit_original_response(
                        content=render.result_content(outcome), attachments=files,
                        view=self.view_factory(outcome), allowed_mentions=NO_MENTIONS,
                    )
            except (discord.NotFound, discord.HTTPException) as exc:
                if isinstance(exc, discord.HTTPException) and exc.status not in (401, 404):
                    raise
                log.info("interaction token unusable (%s); posting in the channel", exc.status)
            else:
                channel = self.interaction.channel
                thread_id = channel.id if isinstance(channel, discord.Thread) else None
                return Delivery(message.id, thread_id=thread_id,
                                start_thread=_thread_starter(message, outcome))
        return await self._fallback().deliver(outcome)

    async def refuse(self, message: str) -> None:
        """An ephemeral refusal: only the member sees it. The public placeholder goes away."""
        await self._stop()
        text = render.clip(f"⚠️ {message}", render.MAX_CONTENT)
        response = self.interaction.response
        if not response.is_done():
            await response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        if self._token_alive():
            try:
                await self._refuse_privately(text)
                return
            except discord.HTTPException as exc:
                if exc.status not in (401, 404):
                    raise
                log.info("interaction token unusable (%s); refusing in the channel", exc.status)
        await self._fallback().refuse(message)

    async def _refuse_privately(self, text: str) -> None:
        # The first followup after a defer would *edit* the public placeholder, so resolve
        # the placeholder first, send the private message, then remove the placeholder.
        # The placeholder shows nothing private in the moment before it is removed.
        await self.interaction.edit_original_response(
            content=render.REFUSED_TEXT, attachments=[], view=None, allowed_mentions=NO_MENTIONS
        )
        await self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        try:
            await self.interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.debug("could not remove the placeholder: %s", exc.status)
