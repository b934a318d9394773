"""Group commit, the write path under reserve/settle/release: batching keeps every
statement's own meaning, and the ledger stays exact while admin transactions interleave."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.errors import QuotaExceeded
from bot.models import Usage
from bot.pricing import PriceTable
from bot.storage.db import Database
from bot.storage.group_commit import GroupCommit
from bot.storage.ledger import Ledger, Reservation

INSERT = "INSERT INTO scratch (v) VALUES (?) RETURNING id, v"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "peel.db")
    await database.write("CREATE TABLE scratch (id INTEGER PRIMARY KEY, v INTEGER CHECK (v >= 0))")
    yield database
    await database.close()


async def stored(db: Database) -> list[int]:
    return [row[0] for row in await db.fetchall("SELECT v FROM scratch ORDER BY id")]


async def test_concurrent_writes_run_in_arrival_order(db: Database) -> None:
    writes = GroupCommit(db)
    results = await asyncio.gather(*(writes.write(INSERT, (i,)) for i in range(300)))
    assert [tuple(rows[0]) for rows in results] == [(i + 1, i) for i in range(300)]
    assert await stored(db) == list(range(300))


async def test_a_broken_constraint_fails_only_its_own_statement(db: Database) -> None:
    writes = GroupCommit(db)
    values = [5, 6, -1, 7, -2, 8]
    results = await asyncio.gather(
        *(writes.write(INSERT, (v,)) for v in values), return_exceptions=True
    )
    failed = [v for v, r in zip(values, results, strict=True) if isinstance(r, BaseException)]
    assert failed == [-1, -2]
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results if isinstance(r, Exception))
    assert await stored(db) == [5, 6, 7, 8]


async def test_a_unit_stands_or_falls_whole_inside_a_shared_batch(db: Database) -> None:
    writes = GroupCommit(db)
    results = await asyncio.gather(
        writes.write(INSERT, (1,)),
        writes.write_unit([(INSERT, (2,)), (INSERT, (3,))]),
        writes.write_unit([(INSERT, (4,)), (INSERT, (-4,)), (INSERT, (5,))]),  # one breaks
        writes.write(INSERT, (6,)),
        return_exceptions=True,
    )
    assert isinstance(results[2], sqlite3.IntegrityError)
    assert [row["v"] for rows in results[1] for row in rows] == [2, 3]  # type: ignore[union-attr]
    assert await stored(db) == [1, 2, 3, 6]  # 4 went with the -4 beside it
    with pytest.raises(sqlite3.IntegrityError):  # a unit alone in its batch: the same
        await writes.write_unit([(INSERT, (7,)), (INSERT, (-7,))])
    assert await stored(db) == [1, 2, 3, 6]


async def test_any_other_error_rolls_the_whole_batch_back(db: Database) -> None:
    writes = GroupCommit(db)
    calls = [writes.write(INSERT, (1,)), writes.write("INSERT INTO nowhere VALUES (1)")]
    calls += [writes.write(INSERT, (2,))]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert await stored(db) == []
    assert (await writes.write(INSERT, (3,)))[0]["v"] == 3  # and the writer goes on


async def test_a_cancelled_caller_does_not_disturb_the_others(db: Database) -> None:
    writes = GroupCommit(db)
    tasks = [asyncio.create_task(writes.write(INSERT, (i,))) for i in range(20)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert sum(isinstance(r, list) for r in results) == 19
    # Queued statements are not withdrawn: it ran, its caller just stopped waiting.
    assert await stored(db) == list(range(20))


async def test_admin_changes_interleaved_with_batches_stay_exact(db: Database) -> None:
    ledger = Ledger(db, default_limit=10_000, prices=PriceTable(), clock=lambda: 1_767_312_000)

    async def job(i: int) -> int:
        key = f"job-{i}"
        try:
            await ledger.reserve(
                key, guild_id=1, user_id=i % 3, usage=Usage(input_tokens=700, reported=False),
                provider="fake", model="m",
            )
        except QuotaExceeded:
            return 0
        await asyncio.sleep(0)
        if i % 4 == 0:
            await ledger.release(key, Usage(input_tokens=30))
            return 30
        await ledger.settle(key, Usage(input_tokens=650 + i % 100))
        return 650 + i % 100

    async def admin(i: int) -> None:
        await ledger.grant(1, i % 3, 500, actor_id=42)
        if i % 5 == 0:
            await ledger.reset(1, i % 3, actor_id=42)

    results = await asyncio.gather(*(job(i) for i in range(150)), *(admin(i) for i in range(30)))
    assert await ledger.open_reservations() == []
    for user in range(3):
        balance = await ledger.balance(1, user)
        row = await db.fetchone(
            "SELECT IFNULL(SUM(e.total_tokens), 0) FROM ledger_entries AS e JOIN quota_balances"
            " AS b USING (guild_id, user_id, period_start)"
            " WHERE e.user_id = ? AND e.id > b.counted_after_entry",
            (user,),
        )
        assert row is not None and balance.spent == row[0]
        assert balance.reserved == 0 and balance.granted == 10 * 500
    assert sum(r for r in results if isinstance(r, int)) > 0
    assert len(await ledger.audit_log(1, limit=100)) == 36


async def test_reservations_in_one_batch_see_each_other(db: Database) -> None:
    ledger = Ledger(db, default_limit=1_000, prices=PriceTable(), clock=lambda: 1_767_312_000)
    results = await asyncio.gather(
        *(
            ledger.reserve(f"k{i}", guild_id=1, user_id=1, usage=Usage(input_tokens=300),
                           provider="fake", model="m")
            for i in range(10)
        ),
        return_exceptions=True,
    )
    assert [isinstance(r, Reservation) for r in results] == [True] * 3 + [False] * 7
