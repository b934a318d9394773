"""Start-up recovery: sort the jobs the last run left queued or running.

- queued: resumed (their reservation is kept);
- running with a stored, unposted result: settled (once) and delivered;
- running with a posted result: only marked done (the crash came after posting);
- running without a result: interrupted, their reservation released, their owner told.

Each job's status message from the last run (its id is stored with the job) is taken over,
so it never goes on saying "Queued" or "Generating": a resumed job shows its progress
there, a delivered result replaces it, an interrupted job's says so.

The database part runs before the bot takes any new event (`setup_hook`), so a job made by
this process is never mistaken for one left by the last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.contract import Outcome
from bot.service import ImageService
from bot.storage.conversations import Turn
from bot.storage.jobs import JobRecord

log = logging.getLogger(__name__)

INTERRUPTED_TEXT = (
    "Peel restarted while your image was being made, so it was interrupted. "
    "Nothing was charged; please run it again."
)
# What the job's old status message ("Generating…") says instead, once the owner is told.
INTERRUPTED_STATUS = "⚠️ Interrupted by a restart. Nothing was charged."


@dataclass(slots=True)
class RecoveryPlan:
    resume: list[JobRecord] = field(default_factory=list)
    deliver: list[tuple[JobRecord, Turn]] = field(default_factory=list)
    interrupted: list[JobRecord] = field(default_factory=list)


async def plan_recovery(service: ImageService) -> RecoveryPlan:
    """Sort the jobs left by the last run and settle the ledger for each."""
    plan = RecoveryPlan()
    for record in await service.jobs.active():
        if record.status == "queued":
            plan.resume.append(record)
            continue
        turn = await service.conversations.by_job(record.key)
        if turn is None:
            plan.interrupted.append(record)
        elif turn.message_id is None:
            plan.deliver.append((record, turn))
        else:
            await service.jobs.set_status(record.key, "done")
    for record, turn in plan.deliver:
        # A turn is stored before its charge: settle now (a no-op if it was settled).
        await service.ledger.settle(record.key, turn.usage)
    released = await service.ledger.recover(keep=[r.key for r in plan.resume])
    for record in plan.interrupted:
        await service.jobs.set_status(record.key, "interrupted", error="interrupted by a restart")
    log.info("recovery: %d to resume, %d to deliver, %d interrupted, %d released",
             len(plan.resume), len(plan.deliver), len(plan.interrupted), released)
    return plan


async def abandon(service: ImageService, record: JobRecord, reason: str) -> None:
    """A queued job that cannot be run or reported (its channel is gone): release it."""
    await service.ledger.release(record.key)
    await service.jobs.set_status(record.key, "failed", error=reason)
    log.warning("job %s dropped at start-up: %s", record.key, reason)


async def outcome_for(service: ImageService, record: JobRecord, turn: Turn) -> Outcome:
    """Rebuild the outcome of a settled turn whose result was never posted."""
    images = tuple(await service.blobs.get_many(list(turn.image_shas)))
    balance = await service.ledger.balance(record.guild_id or 0, record.user_id)
    return Outcome(
        job_key=record.key, turn_id=turn.id, user_id=record.user_id, prompt=record.prompt,
        images=images, caption=turn.caption, usage=turn.usage,
        cost_micro_usd=turn.cost_micro_usd, balance=balance, thread_id=record.thread_id,
        reply_to_id=record.reply_to_id, start_thread=record.start_thread,
    )
