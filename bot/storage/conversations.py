"""Conversation turns: who asked what, the result images, and where they were posted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from bot.models import Usage
from bot.storage.db import Database
from bot.storage.group_commit import Statement


@dataclass(frozen=True, slots=True)
class NewTurn:
    """A finished turn, as the service hands it to storage."""

    job_key: str
    parent_id: int | None
    guild_id: int | None
    channel_id: int
    thread_id: int | None
    user_id: int
    prompt: str
    aspect_ratio: str | None
    caption: str | None
    provider: str
    model: str
    image_shas: tuple[str, ...]
    usage: Usage
    cost_micro_usd: int


@dataclass(frozen=True, slots=True)
class Turn(NewTurn):
    """A stored turn: what was asked and made, plus where it sits and was posted."""

    id: int
    root_id: int
    message_id: int | None


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    thread_id: int
    owner_id: int
    root_turn_id: int


# The new id is given explicitly so that root_id can name it in the same statement.
_INSERT_TURN = """
WITH next(id) AS (SELECT IFNULL(MAX(id), 0) + 1 FROM turns)
INSERT INTO turns (id, root_id, job_key, parent_id, guild_id, channel_id, thread_id,
    user_id, prompt, aspect_ratio, caption, provider, model, input_tokens,
    output_image_tokens, output_text_tokens, thinking_tokens, usage_reported, cost_micro_usd)
SELECT next.id, IFNULL((SELECT IFNULL(root_id, id) FROM turns WHERE id = ?), next.id),
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
FROM next
RETURNING id
"""


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_turn(
        self, turn: NewTurn, *, before: Sequence[Statement] = (),
        after: Sequence[Statement] = (),
    ) -> tuple[int, list[list[aiosqlite.Row]]]:
        """Store a turn and its images, with the `before` and `after` statements around them,
        as one unit of the group commit: all of them or none. Returns the turn's id and the
        rows of each `after` statement.

        The turn takes the next id and its root (the parent's root, else itself) in the
        INSERT, so it needs no read before it nor UPDATE after it; its images find it by its
        job key.
        """
        usage = turn.usage
        params = (
            turn.parent_id, turn.job_key, turn.parent_id, turn.guild_id, turn.channel_id,
            turn.thread_id, turn.user_id, turn.prompt, turn.aspect_ratio, turn.caption,
            turn.provider, turn.model, usage.input_tokens, usage.output_image_tokens,
            usage.output_text_tokens, usage.thinking_tokens, int(usage.reported),
            turn.cost_micro_usd,
        )
        unit: list[Statement] = [(_INSERT_TURN, params)]
        if turn.image_shas:
            values = ", ".join(
                "((SELECT id FROM turns WHERE job_key = ?), ?, ?)" for _ in turn.image_shas
            )
            unit.append((
                f"INSERT INTO turn_images (turn_id, position, sha256) VALUES {values}",
                [v for i, sha in enumerate(turn.image_shas) for v in (turn.job_key, i, sha)],
            ))
        rows = await self.db.group.write_unit([*before, *unit, *after])
        return int(rows[len(before)][0]["id"]), rows[len(before) + len(unit):]

    async def set_message(
        self, turn_id: int, message_id: int, thread_id: int | None,
        *, after: Sequence[Statement] = (),
    ) -> None:
        """Record where the result was posted (the id members reply to), with `after` in
        the same unit."""
        await self.db.group.write_unit([(
            "UPDATE turns SET message_id = ?, thread_id = coalesce(thread_id, ?) WHERE id = ?",
            (message_id, thread_id, turn_id),
        ), *after])

    async def get(self, turn_id: int) -> Turn | None:
        row = await self.db.fetchone("SELECT * FROM turns WHERE id = ?", (turn_id,))
        return await self._turn(row) if row else None

    async def by_job(self, job_key: str) -> Turn | None:
        row = await self.db.fetchone("SELECT * FROM turns WHERE job_key = ?", (job_key,))
        return await self._turn(row) if row else None

    async def by_message(self, message_id: int) -> Turn | None:
        row = await self.db.fetchone("SELECT * FROM turns WHERE message_id = ?", (message_id,))
        return await self._turn(row) if row else None

    async def latest_in_thread(self, thread_id: int) -> Turn | None:
        """The thread's latest image: its newest turn, else the turn it was started on."""
        row = await self.db.fetchone(
            "SELECT * FROM turns WHERE thread_id = ? ORDER BY id DESC LIMIT 1", (thread_id,)
        )
        if row is None:
            row = await self.db.fetchone(
                "SELECT t.* FROM threads h JOIN turns t ON t.id = h.root_turn_id"
                " WHERE h.thread_id = ?",
                (thread_id,),
            )
        return await self._turn(row) if row else None

    async def add_thread(
        self, thread_id: int, *, guild_id: int | None, channel_id: int, owner_id: int,
        root_turn_id: int,
    ) -> None:
        await self.db.batched(
            "INSERT OR IGNORE INTO threads (thread_id, guild_id, channel_id, owner_id,"
            " root_turn_id) VALUES (?, ?, ?, ?, ?)",
            (thread_id, guild_id, channel_id, owner_id, root_turn_id),
        )

    async def thread(self, thread_id: int) -> ThreadInfo | None:
        row = await self.db.fetchone(
            "SELECT thread_id, owner_id, root_turn_id FROM threads WHERE thread_id = ?",
            (thread_id,),
        )
        if row is None:
            return None
        return ThreadInfo(row["thread_id"], row["owner_id"], row["root_turn_id"])

    async def _turn(self, row: aiosqlite.Row) -> Turn:
        images = await self.db.fetchall(
            "SELECT sha256 FROM turn_images WHERE turn_id = ? ORDER BY position", (row["id"],)
        )
        return Turn(
            id=row["id"], job_key=row["job_key"], parent_id=row["parent_id"],
            root_id=row["root_id"] or row["id"], guild_id=row["guild_id"],
            channel_id=row["channel_id"], thread_id=row["thread_id"],
            message_id=row["message_id"], user_id=row["user_id"], prompt=row["prompt"],
            aspect_ratio=row["aspect_ratio"], caption=row["caption"], provider=row["provider"],
            model=row["model"], image_shas=tuple(r["sha256"] for r in images),
            usage=Usage(
                input_tokens=row["input_tokens"],
                output_image_tokens=row["output_image_tokens"],
                output_text_tokens=row["output_text_tokens"],
                thinking_tokens=row["thinking_tokens"],
                reported=bool(row["usage_reported"]),
            ),
            cost_micro_usd=row["cost_micro_usd"],
        )
