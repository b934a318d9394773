"""The turn pipeline: what happens between a member's request and the posted result.

    check -> admit -> persist job -> reserve -> fair slot -> provider -> store turn
          -> settle/release -> deliver (Discord glue) -> done

Each step is idempotent by the job key (the interaction or message id): a duplicated event
finds its job row and does nothing. A job stays `running` until its result is delivered,
so a crash after settling but before posting is delivered on the next start instead of lost.
Until its first provider call starts, a job may be cancelled by its owner; while Peel drains
for a restart, jobs that have not started stay queued for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot.admission import ByteBudget
from bot.contract import Delivery, Outcome, Reporter, TurnSpec, validate_turn
from bot.errors import (
    InvalidRequest,
    PeelError,
    ProviderError,
    QuotaExceeded,
    TooManyJobs,
    UserError,
    user_message_for,
)
from bot.livejobs import CallProgress, CancelResult, LiveJobs
from bot.models import ZERO_USAGE, ImageData, TurnRequest, TurnResult, Usage
from bot.pricing import PriceTable, estimate_usage, format_usd
from bot.providers.base import ImageProvider
from bot.scheduler import Scheduler
from bot.storage.blobs import BlobStore
from bot.storage.conversations import ConversationStore, NewTurn, Turn
from bot.storage.jobs import JobRecord, JobStore
from bot.storage.ledger import Balance, Ledger

__all__ = ["CancelResult", "Delivery", "ImageService", "Outcome", "Reporter", "TurnSpec"]

log = logging.getLogger(__name__)

RESTARTING = "Peel is restarting. Try again in a minute."


class ImageService:
    def __init__(
        self,
        *,
        provider: ImageProvider,
        ledger: Ledger,
        jobs: JobStore,
        conversations: ConversationStore,
        blobs: BlobStore,
        scheduler: Scheduler,
        prices: PriceTable,
        admission: ByteBudget | None = None,
    ) -> None:
        self.provider = provider
        self.ledger = ledger
        self.jobs = jobs
        self.conversations = conversations
        self.blobs = blobs
        self.scheduler = scheduler
        self.prices = prices
        # Bytes of reference images in flight; the Discord glue holds them per turn.
        self.admission = admission if admission is not None else ByteBudget()
        self.live = LiveJobs()
        self._claimed: set[str] = set()  # keys being admitted in this process
        self._lanes: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._tasks: set[asyncio.Task[object]] = set()

    # -- entry points -----------------------------------------------------------------------

    async def run(self, spec: TurnSpec, reporter: Reporter) -> Outcome | None:
        """Run a member's turn to the end. Refusals go to `reporter.refuse`; returns None."""
        if spec.key in self._claimed:
            log.info("job %s is already being admitted; duplicate event ignored", spec.key)
            return None
        self._claimed.add(spec.key)
        try:
            return await self._run_new(spec, reporter)
        finally:
            self._claimed.discard(spec.key)

    def precheck(self, key: str, guild_id: int | None, user_id: int) -> None:
        """Raise the refusal `run` would give for the member's job count or a restart, so
        the glue can refuse before downloading anything. `run` still checks for real."""
        if key in self._claimed or key in self.live:
            return  # a duplicated event: `run` ignores it without a word
        if not self.live.accepting:
            raise InvalidRequest(RESTARTING)
        if self.scheduler.jobs_of((guild_id, user_id)) >= self.scheduler.max_jobs_per_user:
            raise TooManyJobs(self.scheduler.max_jobs_per_user)

    async def _run_new(self, spec: TurnSpec, reporter: Reporter) -> Outcome | None:
        owner = (spec.guild_id, spec.user_id)
        try:
            self.check(spec)
            if not self.live.accepting:
                raise InvalidRequest(RESTARTING)
            self.scheduler.admit(owner)
        except UserError as exc:
            # A replayed event is ignored, never refused. Only a refusal pays for this
            # read: an admitted turn finds a duplicate through `jobs.create`, in the trip
            # that queues it.
            if await self.jobs.exists(spec.key):
                log.info("job %s already exists; duplicate event ignored", spec.key)
            else:
                await reporter.refuse(exc.user_message)
            return None
        try:
            return await self._admitted(spec, reporter)
        finally:
            self.scheduler.finish(owner)

    def check(self, spec: TurnSpec) -> None:
        """Refuse what no provider call could satisfy, before anything is spent."""
        validate_turn(spec, max_reference_images=self.provider.capabilities.max_reference_images)

    async def _admitted(self, spec: TurnSpec, reporter: Reporter) -> Outcome | None:
        shas = tuple([await self.blobs.put(image) for image in spec.references])
        lane = f"thread:{spec.parent_thread_id}" if spec.parent_thread_id else None
        record = JobRecord(
            key=spec.key, kind=spec.kind, status="queued", guild_id=spec.guild_id,
            channel_id=spec.channel_id, user_id=spec.user_id, prompt=spec.prompt.strip(),
            aspect_ratio=spec.aspect_ratio, count=spec.count,
            parent_turn_id=spec.parent_turn_id, thread_id=spec.thread_id,
            reply_to_id=spec.reply_to_id, start_thread=spec.start_thread, lane=lane,
            reference_shas=shas, status_message_id=spec.status_message_id,
        )
        # Queued and reserved in one unit: one trip to the database before the call.
        estimate = self._estimate(record)
        created, (reserved,) = await self.jobs.create(record, after=[
            self.ledger.reserve_statement(
                record.key, guild_id=record.guild_id or 0, user_id=record.user_id,
                usage=estimate, provider=self.provider.name, model=self.provider.model,
            ),
        ])
        if not created:
            log.info("job %s already exists; duplicate event ignored", spec.key)
            return None
        try:
            await self.ledger.reservation_from(
                reserved, record.key, record.guild_id or 0, record.user_id, estimate.total
            )
        except QuotaExceeded as exc:
            await self._refuse_over_quota(record, exc, reporter)
            return None
        return await self._execute(record, spec.references, reporter, spec.warnings)

    async def resume(self, record: JobRecord, reporter: Reporter) -> Outcome | None:
        """Run a job that was still queued when the bot stopped (its reservation kept)."""
        owner = (record.guild_id, record.user_id)
        self.scheduler.force_admit(owner)
        try:
            # Idempotent: finds the reservation kept over the restart, or makes the one a
            # crash between queueing and reserving left out.
            if not await self._reserve(record, reporter):
                return None
            references = tuple(await self.blobs.get_many(list(record.reference_shas)))
            return await self._execute(record, references, reporter, ())
        finally:
            self.scheduler.finish(owner)

    async def _reserve(self, record: JobRecord, reporter: Reporter) -> bool:
        try:
            await self.ledger.reserve(
                record.key, guild_id=record.guild_id or 0, user_id=record.user_id,
                usage=self._estimate(record), provider=self.provider.name,
                model=self.provider.model,
            )
        except QuotaExceeded as exc:
            await self._refuse_over_quota(record, exc, reporter)
            return False
        return True

    def _estimate(self, record: JobRecord) -> Usage:
        has_parent = record.parent_turn_id is not None or record.lane is not None
        return estimate_usage(
            record.prompt, len(record.reference_shas) + int(has_parent),
            images_requested=record.count,
        )

    async def _refuse_over_quota(
        self, record: JobRecord, exc: QuotaExceeded, reporter: Reporter
    ) -> None:
        await self.jobs.set_status(record.key, "failed", error=exc.user_message)
        await reporter.refuse(exc.user_message)

    # -- cancelling and draining ------------------------------------------------------------

    async def cancel(self, key: str, user_id: int) -> CancelResult:
        """Cancel a job that has not started, for its owner. Returns once it is settled:
        out of the queue, its reservation released, its row `cancelled`."""
        waiting = self.live.waiting(key)
        if waiting is None:
            return await self._cannot_cancel(key, user_id)
        if waiting.user_id != user_id:
            return CancelResult.NOT_OWNER
        if await self.live.cancel(waiting):
            return CancelResult.CANCELLED
        return CancelResult.FINISHED

    async def _cannot_cancel(self, key: str, user_id: int) -> CancelResult:
        record = await self.jobs.get(key)
        if record is None:
            return CancelResult.FINISHED
        if record.user_id != user_id:
            return CancelResult.NOT_OWNER
        if record.status in ("queued", "running"):
            return CancelResult.STARTED
        return CancelResult.FINISHED

    # -- the run ------------------------------------------------------------------------------

    async def _execute(
        self,
        record: JobRecord,
        references: tuple[ImageData, ...],
        reporter: Reporter,
        warnings: tuple[str, ...],
    ) -> Outcome | None:
        # The work runs as its own task so the owner's Cancel can stop just this job.
        task = asyncio.create_task(self._work(record, references, reporter, warnings))
        waiting = self.live.watch(record.key, record.user_id, task)
        try:
            return await task
        except asyncio.CancelledError:
            # Shutting down: the job stays queued/running in the database; the next start
            # resumes or releases it. Nothing is charged here.
            if not waiting.cancel_requested or _shutting_down():
                raise
            await self._cancelled(record, reporter)
            return None
        finally:
            self.live.end(waiting)

    async def _cancelled(self, record: JobRecord, reporter: Reporter) -> None:
        await self.ledger.release(record.key)
        await self.jobs.set_status(record.key, "cancelled", error="cancelled by its owner",
                                   only_from=("queued",))
        await reporter.cancelled()
        log.info("job %s cancelled by its owner", record.key)

    async def _work(
        self,
        record: JobRecord,
        references: tuple[ImageData, ...],
        reporter: Reporter,
        warnings: tuple[str, ...],
    ) -> Outcome | None:
        try:
            async with self._lane(record.lane):
                parent = await self._parent(record)
                request = await self._request(record, parent, references)
                results = await self._calls(record, request, reporter)
                outcome = await self._settle(record, parent, results, reporter, warnings)
        except Exception as exc:
            await self._fail(record, exc, ZERO_USAGE, reporter)
            return None
        if outcome is not None:
            await self._deliver(record, outcome, reporter)
        return outcome

    def _lane(self, lane: str | None) -> asyncio.Lock:
        """Jobs in one lane (a thread's edits) run one after another; others at once."""
        if lane is None:
            return asyncio.Lock()
        lock = self._lanes.get(lane)
        if lock is None:
            lock = asyncio.Lock()
            self._lanes[lane] = lock
        return lock

    async def _parent(self, record: JobRecord) -> Turn | None:
        if record.parent_turn_id is not None:
            return await self.conversations.get(record.parent_turn_id)
        if record.lane and record.lane.startswith("thread:"):
            turn = await self.conversations.latest_in_thread(int(record.lane.split(":", 1)[1]))
            if turn is not None:
                await self.jobs.set_parent(record.key, turn.id)
            return turn
        return None

    async def _request(
        self, record: JobRecord, parent: Turn | None, references: tuple[ImageData, ...]
    ) -> TurnRequest:
        images: list[ImageData] = []
        if parent is not None and parent.image_shas:
            images.append(await self.blobs.get(parent.image_shas[0]))
        elif record.kind == "edit" and not references:
            raise InvalidRequest("There is no image to edit here.")
        images.extend(references)
        return TurnRequest(
            prompt=record.prompt, images=tuple(images), aspect_ratio=record.aspect_ratio
        )

    async def _calls(
        self, record: JobRecord, request: TurnRequest, reporter: Reporter
    ) -> list[TurnResult | BaseException]:
        progress = CallProgress(reporter.queued)
        calls = [
            self._call(record, request, reporter, progress, index)
            for index in range(record.count)
        ]
        results = list(await asyncio.gather(*calls, return_exceptions=True))
        if progress.marking is not None:
            await progress.marking  # long done: written while the call went out
        return results

    async def _call(
        self, record: JobRecord, request: TurnRequest, reporter: Reporter, progress: CallProgress,
        index: int,
    ) -> TurnResult:
        owner = (record.guild_id, record.user_id)
        while True:
            async with self.scheduler.slot(owner, progress.tracker(index)):
                if progress.started or self.live.accepting:
                    if not progress.started:
                        await self._begin(record, reporter, progress)
                    return await self.provider.run_turn(request)
            # Draining for a restart and this job has not started: give the slot back and
            # wait; the row stays queued and the next start resumes it.
            await self.live.hold()

    async def _begin(self, record: JobRecord, reporter: Reporter, progress: CallProgress) -> None:
        # No await before these lines: from here on the job cannot be cancelled.
        progress.started = True
        self.live.begin(record.key)
        # The row turns `running` while the call goes out, not before it: a database trip
        # less ahead of every call. A crash in between leaves the row `queued` with the
        # call sent; the next start runs it again, and the member is still charged once
        # (the ledger settles by job key), at the cost of a second upstream call.
        progress.marking = asyncio.ensure_future(
            self.jobs.set_status(record.key, "running", only_from=("queued",))
        )
        await reporter.started()

    async def _settle(
        self,
        record: JobRecord,
        parent: Turn | None,
        results: list[TurnResult | BaseException],
        reporter: Reporter,
        warnings: tuple[str, ...],
    ) -> Outcome | None:
        done = [r for r in results if isinstance(r, TurnResult)]
        errors = [r for r in results if not isinstance(r, TurnResult)]
        for error in errors:
            if isinstance(error, asyncio.CancelledError):
                raise error
        billed = _billed(results)
        if not done:
            await self._fail(record, errors[0], billed, reporter)
            return None
        for error in errors:
            log.warning("job %s: one of %d calls failed: %s", record.key, record.count,
                        _describe(error))
        images = tuple(image for result in done for image in result.images)
        caption = "\n".join(r.text for r in done if r.text) or None
        cost = self.prices.cost_micro_usd(billed)
        # The result (its files written first) and the charge commit together: never a
        # charge without a result, nor a stored result left unsettled by this run (recovery
        # settles those of a crash).
        shas = tuple(await asyncio.gather(*(self.blobs.write_file(image) for image in images)))
        turn_id, balance = await self._store_turn(
            record, parent, images, shas, caption, billed, cost
        )
        extra = list(warnings) + [w for r in done for w in r.warnings]
        if errors:
            extra.append(f"{len(errors)} of {record.count} images failed: "
                         f"{user_message_for(errors[0])}")
        return Outcome(
            job_key=record.key, turn_id=turn_id, user_id=record.user_id, prompt=record.prompt,
            images=images, caption=caption, usage=billed, cost_micro_usd=cost,
            balance=balance, warnings=tuple(dict.fromkeys(extra)), thread_id=record.thread_id,
            reply_to_id=record.reply_to_id, start_thread=record.start_thread,
        )

    async def _store_turn(
        self, record: JobRecord, parent: Turn | None, images: tuple[ImageData, ...],
        shas: tuple[str, ...], caption: str | None, billed: Usage, cost: int,
    ) -> tuple[int, Balance]:
        """Store the turn with its image rows, charge for it, and read the member's balance
        after the charge: one unit, one trip."""
        balance_sql, balance_params = self.ledger.balance_statement(
            record.guild_id or 0, record.user_id
        )
        turn_id, (_, balance_rows) = await self.conversations.add_turn(NewTurn(
            job_key=record.key, parent_id=parent.id if parent else None,
            guild_id=record.guild_id, channel_id=record.channel_id, thread_id=record.thread_id,
            user_id=record.user_id, prompt=record.prompt, aspect_ratio=record.aspect_ratio,
            caption=caption, provider=self.provider.name, model=self.provider.model,
            image_shas=shas, usage=billed, cost_micro_usd=cost,
        ), before=[self.blobs.row(sha, image) for sha, image in zip(shas, images, strict=True)],
            after=[self.ledger.settle_statement(record.key, billed),
                   (balance_sql, balance_params)])
        return turn_id, self.ledger.balance_from(balance_rows[0], balance_params["period_start"])

    async def _fail(
        self, record: JobRecord, error: BaseException, billed: Usage, reporter: Reporter
    ) -> None:
        if not isinstance(error, PeelError):
            log.error("job %s failed unexpectedly", record.key, exc_info=error)
        else:
            log.info("job %s refused: %s", record.key, _describe(error))
        entry = await self.ledger.release(record.key, billed if billed.total else None)
        message = user_message_for(error)
        if entry is not None and entry.total_tokens:
            message += (f"\nThe image service still billed {entry.total_tokens:,} tokens "
                        f"({format_usd(entry.cost_micro_usd)}) for this attempt.")
        elif "Nothing was charged" not in message:
            message += " Nothing was charged."
        await self.jobs.set_status(record.key, "failed", error=message)
        await reporter.refuse(message)

    async def _deliver(self, record: JobRecord, outcome: Outcome, reporter: Reporter) -> None:
        try:
            delivery = await reporter.deliver(outcome)
        except Exception:
            log.exception("job %s: the result could not be posted", record.key)
            await self.jobs.set_status(record.key, "failed", error="delivery failed")
            return
        await self.record_delivery(record, outcome.turn_id, delivery)

    async def record_delivery(self, record: JobRecord, turn_id: int, delivery: Delivery) -> None:
        """The result is posted: the job is done. Its conversation thread is started after
        that, on its own. Thread creation is a bot route under Discord's 50 requests/s
        limit, and discord.py sends one at a time per channel until Discord names the
        route's bucket: waited for inside the job, it kept every finished job counted
        against its member's limit, and its images in memory, behind the channel's queue
        (in one load test 21 s at p99 and 1.9 GB). A crash before the thread starts leaves
        a result without one; replying to it still continues the conversation."""
        await self.conversations.set_message(
            turn_id, delivery.message_id, delivery.thread_id,
            after=[self.jobs.status_statement(record.key, "done")],
        )
        if delivery.start_thread is not None:
            self.spawn(self._open_thread(record, turn_id, delivery.start_thread))

    async def _open_thread(
        self, record: JobRecord, turn_id: int, start: Callable[[], Awaitable[int | None]]
    ) -> None:
        try:
            thread_id = await start()
            if thread_id is not None:
                await self.conversations.add_thread(
                    thread_id, guild_id=record.guild_id, channel_id=record.channel_id,
                    owner_id=record.user_id, root_turn_id=turn_id,
                )
        except Exception:
            log.exception("job %s: the conversation thread could not be started", record.key)

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Keep a background task referenced until it ends."""
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _billed(results: list[TurnResult | BaseException]) -> Usage:
    """What the provider billed across a job's calls, failed ones included."""
    billed = ZERO_USAGE
    for item in results:
        if isinstance(item, TurnResult | ProviderError):
            billed = billed + item.usage
    return billed


def _shutting_down() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _describe(error: BaseException) -> str:
    if isinstance(error, ProviderError):
        return f"{type(error).__name__}: {error.detail}"
    return f"{type(error).__name__}: {error}"
