"""Group commit: single-statement writes from many coroutines share one transaction.

Under load, every write on the one connection waits for the one before it to come back
from aiosqlite's thread, and every commit is a WAL write (an fsync with synchronous=FULL).
`GroupCommit.write()` queues its statement instead. A lone statement runs as it would
alone (one autocommit statement under the write lock). A backlog runs as one
transaction that goes to aiosqlite's thread as one call (`Database.write_batch`).

Each statement keeps its own meaning: it is still one atomic statement, run in arrival
order, seeing every statement before it. One that breaks a constraint (a CHECK, a
trigger's RAISE) is undone alone by SQLite's statement rollback and only its caller gets
the error; any other error (I/O, a full disk) rolls the whole batch back and every caller
in it gets the error. No caller hears of success before the COMMIT that made its statement
durable. A caller cancelled while waiting does not stop its statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosqlite

# Database imports this module when it is built, so this one only needs the aliases.
from bot.storage.db import Params, Statement

if TYPE_CHECKING:
    from bot.storage.db import Database

__all__ = ["GroupCommit", "Params", "Statement"]


@dataclass(frozen=True, slots=True)
class _Write:
    """A unit: one statement, or several that commit or fail together."""

    statements: tuple[Statement, ...]
    done: asyncio.Future[list[list[aiosqlite.Row]]]


class GroupCommit:
    """Batches one-statement writes (typically INSERT ... RETURNING) into shared commits."""

    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self._db = db
        self._max_batch = max_batch
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        """Run one write statement; its RETURNING rows once it is committed."""
        rows = await self.write_unit([(sql, params)])
        return rows[0]

    async def write_unit(self, statements: Sequence[Statement]) -> list[list[aiosqlite.Row]]:
        """Run statements that stand or fall together (a savepoint inside the batch);
        each one's RETURNING rows once committed. Queued the moment this is called, so
        units asked for in one go land in the same batch, in the order asked."""
        write = _Write(tuple(statements), asyncio.get_running_loop().create_future())
        self._pending.append(write)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await write.done

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._run(batch)
            except Exception as error:  # the batch was rolled back, or never ran
                for write in batch:
                    _fail(write, error)
            except BaseException:  # this task is cancelled: nobody will run the rest
                for write in batch + self._pending:
                    write.done.cancel()
                self._pending.clear()
                raise

    async def _run(self, batch: list[_Write]) -> None:
        if len(batch) == 1 and len(batch[0].statements) == 1:
            write = batch[0]
            try:
                rows = await self._db.write_returning(*write.statements[0])
            except Exception as error:
                _fail(write, error)
            else:
                _resolve(write, [rows])
            return
        results = await self._db.write_batch([write.statements for write in batch])
        for write, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                _fail(write, result)
            else:
                _resolve(write, result)


def _resolve(write: _Write, rows: list[list[aiosqlite.Row]]) -> None:
    if not write.done.done():
        write.done.set_result(rows)


def _fail(write: _Write, error: BaseException) -> None:
    if not write.done.done():
        write.done.set_exception(error)
