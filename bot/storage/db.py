"""The one SQLite database: connection, pragmas, numbered migrations, and the write lock.

aiosqlite runs every statement of a connection on one worker thread, but coroutines that
share the connection interleave *inside each other's transactions*. So every write goes
through `Database.write()` (one statement) or `Database.transaction()` (several), both
holding one asyncio lock; reads may run freely. One-statement writes on a turn's path go
through `Database.batched()`, the shared group commit (group_commit.py): under load, the
statements of many turns share one transaction and one lock acquisition.

Each call here is one trip to aiosqlite's thread: a read fetches its rows with the
statement (`execute_fetchall`), never as execute + fetch + close.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

Params = Sequence[Any] | Mapping[str, Any]
Statement = tuple[str, Params]

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bot.storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    return found


class Database:
    """A thin wrapper over one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        from bot.storage.group_commit import GroupCommit  # it needs this module: no cycle

        self.conn = conn
        self.lock = asyncio.Lock()
        self.group = GroupCommit(self)

    @classmethod
    async def open(cls, path: Path | str, *, synchronous: str = "NORMAL") -> Database:
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={synchronous}")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        db = cls(conn)
        await db.migrate()
        return db

    async def close(self) -> None:
        await self.conn.close()

    async def migrate(self) -> None:
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at INTEGER NOT NULL DEFAULT (unixepoch()))"
        )
        async with self.conn.execute("SELECT version FROM schema_migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        for version, name, sql in _migrations():
            if version in done:
                continue
            log.info("applying migration %s", name)
            async with self.transaction():
                for statement in _split_sql(sql):
                    await self.conn.execute(statement)
                await self.conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name)
                )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the write lock; rolls back on any exception."""
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (a full disk): never leave the shared
                # connection inside a transaction that the next writer would join.
                if self.conn.in_transaction:
                    await self.conn.execute("ROLLBACK")
                raise

    async def write(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Cursor:
        """One autocommit write statement under the write lock. Returns the cursor."""
        async with self.lock:
            return await self.conn.execute(sql, params)

    async def write_returning(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        """One write statement with a RETURNING clause, its rows read under the write lock.

        An autocommit statement only commits once its rows are all read, so reading them
        outside the lock would let another coroutine's statement join its transaction.
        """
        async with self.lock:
            return list(await self.conn.execute_fetchall(sql, params))

    async def batched(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        """One write statement through the shared group commit; its RETURNING rows once
        committed. A statement that needs to know whether it changed a row says RETURNING."""
        return await self.group.write(sql, params)

    async def write_batch(
        self, units: Sequence[Sequence[Statement]]
    ) -> list[list[list[aiosqlite.Row]] | sqlite3.IntegrityError]:
        """Units of write statements in one transaction, in order: for each unit, every
        statement's RETURNING rows, or the IntegrityError that undid that unit alone.

        The whole transaction is one call on aiosqlite's thread. Sent statement by statement
        (BEGIN, each write, COMMIT), every statement was a trip there and back, and under load
        each trip waited for the GIL on both sides: a batch of 20 took longer than the turn's
        provider call. A unit that breaks a constraint (a CHECK, a trigger's RAISE) is undone
        alone (SQLite's statement rollback, or a savepoint around a unit of several); any other
        error rolls the whole batch back and is raised.
        """
        async with self.lock:
            # aiosqlite runs every public method through `_execute` on its thread; it has
            # no public way to run several statements in one trip.
            results: list[list[list[aiosqlite.Row]] | sqlite3.IntegrityError] = (
                await self.conn._execute(_run_batch, self.conn, units)
            )
            return results

    async def fetchone(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> aiosqlite.Row | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        return list(await self.conn.execute_fetchall(sql, params))


def _run_batch(
    conn: aiosqlite.Connection, units: Sequence[Sequence[Statement]]
) -> list[list[list[aiosqlite.Row]] | sqlite3.IntegrityError]:
    """On aiosqlite's thread: BEGIN IMMEDIATE, each unit, COMMIT (see write_batch)."""
    raw = conn._conn  # the sqlite3 connection, used on its own thread
    results: list[list[list[aiosqlite.Row]] | sqlite3.IntegrityError] = []
    raw.execute("BEGIN IMMEDIATE")
    try:
        for unit in units:
            results.append(_run_unit(raw, unit))
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:  # also after a failed COMMIT: never leave one open
            raw.execute("ROLLBACK")
        raise
    return results


def _run_unit(
    raw: sqlite3.Connection, unit: Sequence[Statement]
) -> list[list[aiosqlite.Row]] | sqlite3.IntegrityError:
    if len(unit) == 1:
        try:
            return [raw.execute(*unit[0]).fetchall()]
        except sqlite3.IntegrityError as error:
            return error
    raw.execute("SAVEPOINT unit")
    try:
        rows = [raw.execute(sql, params).fetchall() for sql, params in unit]
    except sqlite3.IntegrityError as error:
        raw.execute("ROLLBACK TO unit")
        raw.execute("RELEASE unit")
        return error
    raw.execute("RELEASE unit")
    return rows


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping CREATE TRIGGER ... END blocks whole."""
    statements: list[str] = []
    current: list[str] = []
    in_trigger = False
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        upper = stripped.upper()
        if upper.startswith("CREATE TRIGGER") or upper.startswith("CREATE TEMP TRIGGER"):
            in_trigger = True
        if in_trigger:
            if upper.rstrip(";") == "END" or upper.endswith(" END;") or upper == "END;":
                statements.append("\n".join(current))
                current, in_trigger = [], False
        elif stripped.endswith(";"):
            statements.append("\n".join(current))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
