"""Persisted jobs: every turn a member asks for, keyed by its interaction or message id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from bot.storage.db import Database
from bot.storage.group_commit import Statement

JobStatus = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
ACTIVE: tuple[JobStatus, ...] = ("queued", "running")


@dataclass(frozen=True, slots=True)
class JobRecord:
    key: str
    kind: Literal["imagine", "edit"]
    status: JobStatus
    guild_id: int | None
    channel_id: int
    user_id: int
    prompt: str
    aspect_ratio: str | None
    count: int
    parent_turn_id: int | None
    thread_id: int | None
    reply_to_id: int | None
    start_thread: bool
    lane: str | None
    reference_shas: tuple[str, ...] = ()
    error: str | None = None
    status_message_id: int | None = None  # in channel_id; see migration 0003


def _record(row: aiosqlite.Row, shas: Sequence[str]) -> JobRecord:
    return JobRecord(
        key=row["key"], kind=row["kind"], status=row["status"], guild_id=row["guild_id"],
        channel_id=row["channel_id"], user_id=row["user_id"], prompt=row["prompt"],
        aspect_ratio=row["aspect_ratio"], count=row["count"],
        parent_turn_id=row["parent_turn_id"], thread_id=row["thread_id"],
        reply_to_id=row["reply_to_id"], start_thread=bool(row["start_thread"]),
        lane=row["lane"], reference_shas=tuple(shas), error=row["error"],
        status_message_id=row["status_message_id"],
    )


_INSERT_JOB = (
    "INSERT OR IGNORE INTO jobs (key, kind, status, guild_id, channel_id, user_id, prompt,"
    " aspect_ratio, count, parent_turn_id, thread_id, reply_to_id, start_thread, lane,"
    " status_message_id) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " RETURNING key"
)


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, job: JobRecord, *, after: Sequence[Statement] = ()
    ) -> tuple[bool, list[list[aiosqlite.Row]]]:
        """Queue a job, with its reference rows and the `after` writes, as one unit of the
        group commit. Returns whether the job is new (False: the key exists already, a
        duplicated event) and the rows of each `after` statement.
        """
        row = (
            job.key, job.kind, job.guild_id, job.channel_id, job.user_id, job.prompt,
            job.aspect_ratio, job.count, job.parent_turn_id, job.thread_id,
            job.reply_to_id, int(job.start_thread), job.lane, job.status_message_id,
        )
        unit: list[Statement] = [(_INSERT_JOB, row)]
        if job.reference_shas:
            values = ", ".join("(?, ?, ?)" for _ in job.reference_shas)
            unit.append((
                # OR IGNORE: a duplicated event's rows are already there.
                f"INSERT OR IGNORE INTO job_references (job_key, position, sha256) VALUES {values}",
                [v for i, sha in enumerate(job.reference_shas) for v in (job.key, i, sha)],
            ))
        rows = await self.db.group.write_unit([*unit, *after])
        return bool(rows[0]), rows[len(unit):]

    async def exists(self, key: str) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM jobs WHERE key = ?", (key,))
        return row is not None

    async def get(self, key: str) -> JobRecord | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE key = ?", (key,))
        if row is None:
            return None
        refs = await self.db.fetchall(
            "SELECT sha256 FROM job_references WHERE job_key = ? ORDER BY position", (key,)
        )
        return _record(row, [r["sha256"] for r in refs])

    async def set_status(
        self, key: str, status: JobStatus, *, error: str | None = None,
        only_from: Sequence[JobStatus] | None = None,
    ) -> bool:
        """Move a job to `status`; with `only_from`, only if it is in one of those states."""
        return bool(await self.db.batched(
            *self.status_statement(key, status, error=error, only_from=only_from)
        ))

    @staticmethod
    def status_statement(
        key: str, status: JobStatus, *, error: str | None = None,
        only_from: Sequence[JobStatus] | None = None,
    ) -> Statement:
        """`set_status` as a statement, for a unit of several (RETURNING the key it moved)."""
        sql = "UPDATE jobs SET status = ?, error = ?, updated_at = unixepoch() WHERE key = ?"
        params: list[object] = [status, error, key]
        if only_from:
            sql += f" AND status IN ({', '.join('?' for _ in only_from)})"
            params.extend(only_from)
        return sql + " RETURNING key", params

    async def set_parent(self, key: str, parent_turn_id: int | None) -> None:
        await self.db.batched(
            "UPDATE jobs SET parent_turn_id = ? WHERE key = ?", (parent_turn_id, key)
        )

    async def set_status_message(self, key: str, message_id: int) -> None:
        """Remember the message showing the job's progress (a missing job: no-op)."""
        await self.db.batched(
            "UPDATE jobs SET status_message_id = ? WHERE key = ?", (message_id, key)
        )

    async def active(self) -> list[JobRecord]:
        """Jobs left queued or running, oldest first (for start-up recovery)."""
        rows = await self.db.fetchall(
            "SELECT key FROM jobs WHERE status IN ('queued', 'running') ORDER BY rowid"
        )
        jobs = [await self.get(row["key"]) for row in rows]
        return [job for job in jobs if job is not None]
