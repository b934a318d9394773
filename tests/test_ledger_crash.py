"""A process killed while it holds reservations leaves nothing behind after recover()."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from bot.pricing import PriceTable
from bot.storage.db import Database
from bot.storage.ledger import Ledger

CHILD = Path(__file__).with_name("ledger_crash_child.py")
ROOT = CHILD.parent.parent
GUILD, USER = 111, 222
NOW = 1_767_268_800 + 12 * 3600  # fixed, so no midnight falls between child and test

pytestmark = pytest.mark.slow


async def run_and_kill(path: Path, mode: str, *, linger: float = 0.0) -> None:
    """Start the child, wait for "reserved", let it go on for `linger` s, then SIGKILL it."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(path), mode, str(NOW),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
        assert line.strip() == b"reserved"
        await asyncio.sleep(linger)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL


async def scalar(db: Database, sql: str) -> object:
    row = await db.fetchone(sql)
    assert row is not None
    return row[0]


async def check_recovered(db: Database, ledger: Ledger) -> None:
    assert await ledger.open_reservations() == []
    assert (await ledger.balance(GUILD, USER)).reserved == 0
    assert await scalar(db, "PRAGMA integrity_check") == "ok"
    assert await db.fetchall("PRAGMA foreign_key_check") == []
    charged = await scalar(db, "SELECT IFNULL(SUM(total_tokens), 0) FROM ledger_entries")
    assert (await ledger.balance(GUILD, USER)).spent == charged
    unclosed = await scalar(
        db,
        "SELECT COUNT(*) FROM ledger_reservations AS r"
        " LEFT JOIN ledger_entries AS e ON e.key = r.key WHERE e.key IS NULL",
    )
    assert unclosed == 0


async def test_reservations_of_a_killed_process_are_released(tmp_path: Path) -> None:
    path = tmp_path / "peel.db"
    await run_and_kill(path, "hold")

    db = await Database.open(path)
    try:
        ledger = Ledger(db, default_limit=0, prices=PriceTable(), clock=lambda: NOW)
        left = await ledger.open_reservations()
        assert [r.key for r in left] == [f"hold-{i}" for i in range(1, 5)]
        assert (await ledger.balance(GUILD, USER)).reserved == 4 * 1_500

        assert await ledger.recover() == 4
        await check_recovered(db, ledger)
        assert (await ledger.balance(GUILD, USER)).spent == 900
        assert await ledger.recover() == 0
    finally:
        await db.close()


async def test_a_kill_in_the_middle_of_writes_leaves_consistent_counters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "peel.db"
    await run_and_kill(path, "churn", linger=0.5)

    db = await Database.open(path)
    try:
        ledger = Ledger(db, default_limit=0, prices=PriceTable(), clock=lambda: NOW)
        held = await ledger.open_reservations()
        assert len(held) > 10, "the child should have written for a while"
        balance = await ledger.balance(GUILD, USER)
        assert balance.reserved == sum(r.tokens for r in held)

        queued = {held[-1].key}
        assert await ledger.recover(keep=queued) == len(held) - 1
        assert [r.key for r in await ledger.open_reservations()] == [*queued]
        await ledger.release(held[-1].key)
        await check_recovered(db, ledger)
    finally:
        await db.close()
