"""The token ledger on a real SQLite file: budgets, concurrency, idempotency, overrides."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.errors import QuotaExceeded
from bot.models import Usage
from bot.pricing import PriceTable
from bot.storage.db import Database
from bot.storage.ledger import DAY_SECONDS, Ledger, Reservation

GUILD, USER, ADMIN = 111, 222, 999
NOON = 1_767_268_800 + 12 * 3600  # 2026-01-01 12:00 UTC
PRICES = PriceTable()


class Clock:
    """An injectable clock the tests move by hand."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def estimate(tokens: int) -> Usage:
    return Usage(input_tokens=tokens, reported=False)


def reported(tokens: int, *, image: int = 0, thinking: int = 0) -> Usage:
    return Usage(input_tokens=tokens, output_image_tokens=image, thinking_tokens=thinking)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "peel.db")
    yield database
    await database.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_ledger(db: Database, clock: Clock, default_limit: int = 10_000) -> Ledger:
    return Ledger(db, default_limit=default_limit, prices=PRICES, clock=clock)


async def reserve(
    ledger: Ledger, key: str, tokens: int, *, user: int = USER, guild: int = GUILD
) -> Reservation:
    return await ledger.reserve(
        key, guild_id=guild, user_id=user, usage=estimate(tokens), provider="fake", model="m"
    )


async def entry_count(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM ledger_entries")
    assert row is not None
    return int(row[0])


async def test_concurrent_reservations_never_overspend(db: Database, clock: Clock) -> None:
    size, fits = 1_000, 37
    ledger = make_ledger(db, clock, default_limit=size * fits)
    held: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            balance = await ledger.balance(GUILD, USER)
            held.append(balance.spent + balance.reserved)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    keys = [f"job-{i}" for i in range(200)]
    results = await asyncio.gather(
        *(reserve(ledger, key, size) for key in keys), return_exceptions=True
    )
    done.set()
    await watcher

    won = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(won) == fits and len(refused) == 200 - fits
    assert all(e.needed == size and e.remaining < size for e in refused)
    assert held and max(held) <= size * fits
    assert (await ledger.balance(GUILD, USER)).reserved == size * fits

    charges = [size - i * 10 for i in range(fits)]  # every job billed under its estimate
    settled = await asyncio.gather(
        *(ledger.settle(r.key, reported(c)) for r, c in zip(won, charges, strict=True))
    )
    balance = await ledger.balance(GUILD, USER)
    assert balance.spent == sum(charges) == sum(e.total_tokens for e in settled)
    assert balance.reserved == 0
    assert balance.cost_micro_usd == sum(e.cost_micro_usd for e in settled)
    assert await ledger.open_reservations() == []


async def test_mixed_sizes_concurrently_stay_within_budget(db: Database, clock: Clock) -> None:
    budget = 25_000
    ledger = make_ledger(db, clock, default_limit=budget)
    sizes = [(i * 7919) % 1500 + 1 for i in range(200)]
    results = await asyncio.gather(
        *(reserve(ledger, f"job-{i}", size) for i, size in enumerate(sizes)),
        return_exceptions=True,
    )
    won = sum(size for size, r in zip(sizes, results, strict=True) if isinstance(r, Reservation))
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert refused and all(e.remaining < e.needed for e in refused)
    assert won <= budget
    assert (await ledger.balance(GUILD, USER)).reserved == won


async def test_two_connections_cannot_overspend_either(tmp_path: Path, clock: Clock) -> None:
    """The check is in the statement itself, not in the one connection's asyncio lock."""
    first = await Database.open(tmp_path / "peel.db")
    second = await Database.open(tmp_path / "peel.db")
    try:
        size, fits = 500, 23
        ledgers = [make_ledger(d, clock, default_limit=size * fits) for d in (first, second)]
        results = await asyncio.gather(
            *(reserve(ledgers[i % 2], f"job-{i}", size) for i in range(200)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, Reservation) for r in results) == fits
        assert sum(isinstance(r, QuotaExceeded) for r in results) == 200 - fits
        assert (await ledgers[0].balance(GUILD, USER)).reserved == size * fits
    finally:
        await first.close()
        await second.close()


async def test_same_key_at_once_reserves_and_charges_once(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock)
    reservations = await asyncio.gather(
        *(reserve(ledger, "interaction-1", 1_500) for _ in range(10))
    )
    assert len(set(reservations)) == 1
    assert (await ledger.balance(GUILD, USER)).reserved == 1_500
    assert len(await ledger.open_reservations()) == 1

    entries = await asyncio.gather(
        *(ledger.settle("interaction-1", reported(1_200 + i)) for i in range(10))
    )
    assert len(set(entries)) == 1
    assert await entry_count(db) == 1
    balance = await ledger.balance(GUILD, USER)
    assert (balance.spent, balance.reserved) == (entries[0].total_tokens, 0)


async def test_reserving_a_known_key_returns_it_in_any_state(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=1_000)
    await reserve(ledger, "k", 800)
    await ledger.settle("k", reported(900))
    again = await reserve(ledger, "k", 800)  # would no longer fit: 900 spent
    assert again.state == "settled" and again.tokens == 800
    assert (await ledger.balance(GUILD, USER)).reserved == 0


async def test_settle_twice_and_release_after_settle_change_nothing(
    db: Database, clock: Clock
) -> None:
    ledger = make_ledger(db, clock)
    await reserve(ledger, "k", 2_000)
    first = await ledger.settle("k", reported(300, image=1_120))
    before = await ledger.balance(GUILD, USER)

    assert await ledger.settle("k", reported(5_000)) == first
    assert await ledger.release("k", reported(40)) == first
    assert await ledger.release("k") == first
    assert await ledger.balance(GUILD, USER) == before
    assert await entry_count(db) == 1
    assert first.kind == "charge" and first.reported and first.total_tokens == 1_420
    assert first.cost_micro_usd == PRICES.cost_micro_usd(reported(300, image=1_120))


async def test_release_charges_only_what_was_billed(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock)
    await reserve(ledger, "blocked", 1_500)
    await reserve(ledger, "failed", 1_500)

    blocked = await ledger.release("blocked", reported(57))
    failed = await ledger.release("failed")
    assert blocked is not None and failed is not None
    assert (blocked.kind, blocked.total_tokens, blocked.reported) == ("release", 57, True)
    assert (failed.kind, failed.total_tokens, failed.cost_micro_usd) == ("release", 0, 0)
    assert not failed.reported
    balance = await ledger.balance(GUILD, USER)
    assert (balance.spent, balance.reserved) == (57, 0)
    assert balance.by_kind == {"input": 57, "output_image": 0, "output_text": 0, "thinking": 0}
    # Settling a released key returns its release and charges nothing.
    assert await ledger.settle("failed", reported(1_000)) == failed
    assert (await ledger.balance(GUILD, USER)).spent == 57


async def test_unknown_keys(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock)
    assert await ledger.release("never-reserved") is None
    with pytest.raises(KeyError):
        await ledger.settle("never-reserved", reported(10))


async def test_a_bill_above_the_estimate_is_recorded_in_full(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=2_000)
    await reserve(ledger, "k", 1_500)
    entry = await ledger.settle("k", reported(500, image=2_100))
    balance = await ledger.balance(GUILD, USER)
    assert entry.total_tokens == balance.spent == 2_600
    assert balance.reserved == 0 and balance.remaining == 0
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(ledger, "next", 1)
    assert refused.value.remaining == 0


async def test_quota_exceeded_says_what_is_left_and_when(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=3_000)
    await reserve(ledger, "a", 1_000)
    await ledger.settle("a", reported(900))
    await reserve(ledger, "b", 1_500)
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(ledger, "c", 700)
    assert (refused.value.needed, refused.value.remaining) == (700, 600)
    midnight = NOON - NOON % DAY_SECONDS + DAY_SECONDS
    assert refused.value.resets_at == midnight == (await ledger.balance(GUILD, USER)).resets_at
    assert await ledger.release("c") is None  # a refusal leaves nothing behind


async def test_unlimited_budgets(db: Database, clock: Clock) -> None:
    unlimited = make_ledger(db, clock, default_limit=0)
    for i in range(5):
        await reserve(unlimited, f"big-{i}", 10_000_000)
    balance = await unlimited.balance(GUILD, USER)
    assert (balance.limit, balance.remaining, balance.reserved) == (None, None, 50_000_000)

    limited = make_ledger(db, clock, default_limit=1_000)
    await limited.set_limit(GUILD, 333, 0, actor_id=ADMIN)
    await reserve(limited, "other-big", 10_000_000, user=333)
    assert (await limited.balance(GUILD, 333)).limit is None
    with pytest.raises(QuotaExceeded):
        await reserve(limited, "small", 10_000_000, user=444)


async def test_set_limit_overrides_until_set_back_to_default(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=1_000)
    assert (await ledger.set_limit(GUILD, USER, 5_000, actor_id=ADMIN)).limit == 5_000
    await reserve(ledger, "k", 4_000)
    assert (await ledger.set_limit(GUILD, USER, None, actor_id=ADMIN)).limit == 1_000

    # A new default (settings changed, bot restarted) applies to members without an override.
    await ledger.set_limit(GUILD, 333, 7_000, actor_id=ADMIN)
    restarted = make_ledger(db, clock, default_limit=2_500)
    assert (await restarted.balance(GUILD, USER)).limit == 2_500
    assert (await restarted.balance(GUILD, 333)).limit == 7_000
    with pytest.raises(ValueError):
        await ledger.set_limit(GUILD, USER, -1, actor_id=ADMIN)


async def test_grant_lasts_for_the_current_period_only(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=1_000)
    await reserve(ledger, "a", 1_000)
    balance = await ledger.grant(GUILD, USER, 600, actor_id=ADMIN)
    assert (balance.granted, balance.remaining) == (600, 600)
    await reserve(ledger, "b", 600)

    clock.now += DAY_SECONDS
    tomorrow = await ledger.balance(GUILD, USER)
    assert (tomorrow.granted, tomorrow.spent, tomorrow.reserved) == (0, 0, 0)
    assert tomorrow.remaining == 1_000
    with pytest.raises(ValueError):
        await ledger.grant(GUILD, USER, 0, actor_id=ADMIN)


async def test_reset_zeroes_spend_but_keeps_entries_and_holds(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=3_000)
    await reserve(ledger, "a", 1_000)
    await ledger.settle("a", reported(800, thinking=150))
    await reserve(ledger, "b", 1_000)

    balance = await ledger.reset(GUILD, USER, actor_id=ADMIN)
    assert (balance.spent, balance.reserved, balance.cost_micro_usd) == (0, 1_000, 0)
    assert balance.remaining == 2_000
    assert [e.key for e in await ledger.recent(GUILD, USER)] == ["a"]
    # A reservation made before the reset still counts when it settles after it.
    await ledger.settle("b", reported(700))
    assert (await ledger.balance(GUILD, USER)).spent == 700


async def test_every_admin_change_is_audited(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=1_000)
    await reserve(ledger, "a", 500)
    await ledger.settle("a", reported(450))
    await ledger.set_limit(GUILD, USER, 4_000, actor_id=1)
    await ledger.grant(GUILD, USER, 250, actor_id=2)
    await ledger.grant(GUILD, USER, 100, actor_id=2)
    await ledger.reset(GUILD, USER, actor_id=3)
    await ledger.set_limit(GUILD, USER, None, actor_id=4)
    await ledger.grant(GUILD, 333, 50, actor_id=5)

    rows = await ledger.audit_log(GUILD, USER)
    summary = [(r.action, r.actor_id, r.tokens, r.previous) for r in rows]
    assert summary == [
        ("set_limit", 4, None, 4_000),
        ("reset", 3, 0, 450),
        ("grant", 2, 100, 250),
        ("grant", 2, 250, 0),
        ("set_limit", 1, 4_000, None),
    ]
    assert all(r.guild_id == GUILD and r.user_id == USER for r in rows)
    assert all(r.created_at == int(clock.now) for r in rows)
    assert [r.actor_id for r in await ledger.audit_log(GUILD, limit=2)] == [5, 4]
    assert await ledger.audit_log(GUILD + 1) == []
    with pytest.raises(sqlite3.IntegrityError):
        await db.write("DELETE FROM quota_audit")
    with pytest.raises(sqlite3.IntegrityError):
        await db.write("UPDATE ledger_entries SET total_tokens = 0, input_tokens = 0")


async def test_a_reservation_is_charged_to_its_own_period(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=2_000)
    clock.now = NOON - NOON % DAY_SECONDS + DAY_SECONDS - 1  # 23:59:59
    yesterday = (await reserve(ledger, "late", 1_500)).period_start

    clock.now += 2  # 00:00:01, the next day
    today = await ledger.balance(GUILD, USER)
    assert today.period_start == yesterday + DAY_SECONDS
    assert (today.spent, today.reserved, today.remaining) == (0, 0, 2_000)
    await reserve(ledger, "early", 2_000)  # the new period starts empty

    await ledger.settle("late", reported(1_400))
    today = await ledger.balance(GUILD, USER)
    assert (today.spent, today.reserved) == (0, 2_000)
    row = await db.fetchone(
        "SELECT spent, reserved FROM quota_balances WHERE period_start = ?", (yesterday,)
    )
    assert row is not None and tuple(row) == (1_400, 0)


async def test_members_and_servers_have_separate_budgets(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock, default_limit=1_000)
    await reserve(ledger, "a", 1_000)
    await reserve(ledger, "b", 1_000, user=333)
    await reserve(ledger, "c", 1_000, guild=GUILD + 1)
    with pytest.raises(QuotaExceeded):
        await reserve(ledger, "d", 1)
    assert (await ledger.balance(GUILD + 1, USER)).reserved == 1_000


async def test_recover_releases_everything_not_kept(
    db: Database, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = make_ledger(db, clock)
    for key in ("done", "lost-1", "queued", "lost-2"):
        await reserve(ledger, key, 1_000)
    await ledger.settle("done", reported(900))

    with caplog.at_level(logging.WARNING, logger="bot.storage.ledger"):
        assert await ledger.recover(keep={"queued"}) == 2
    assert [r.key for r in await ledger.open_reservations()] == ["queued"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and all("lost-" in message for message in warned)
    balance = await ledger.balance(GUILD, USER)
    assert (balance.spent, balance.reserved) == (900, 1_000)

    assert await ledger.recover() == 1
    assert await ledger.recover() == 0
    assert await ledger.open_reservations() == []
    assert (await ledger.balance(GUILD, USER)).reserved == 0


async def test_recent_lists_newest_first(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock)
    for i in range(7):
        await reserve(ledger, f"k{i}", 100)
        await ledger.settle(f"k{i}", reported(10 + i))
    recent = await ledger.recent(GUILD, USER)
    assert [e.key for e in recent] == ["k6", "k5", "k4", "k3", "k2"]
    assert [e.key for e in await ledger.recent(GUILD, USER, limit=2)] == ["k6", "k5"]
    assert await ledger.recent(GUILD, 333) == []


async def test_negative_usage_is_refused(db: Database, clock: Clock) -> None:
    ledger = make_ledger(db, clock)
    with pytest.raises(ValueError):
        await reserve(ledger, "k", -5)
    await reserve(ledger, "k", 5)
    with pytest.raises(ValueError):
        await ledger.settle("k", Usage(thinking_tokens=-1))
    assert (await ledger.balance(GUILD, USER)).reserved == 5


async def test_a_job_is_queued_and_reserved_in_one_unit_and_a_replay_reserves_nothing(
    db: Database, clock: Clock
) -> None:
    from bot.storage.jobs import JobRecord, JobStore

    ledger, jobs = make_ledger(db, clock, default_limit=1_000), JobStore(db)

    def record(key: str) -> JobRecord:
        return JobRecord(
            key=key, kind="imagine", status="queued", guild_id=GUILD, channel_id=1,
            user_id=USER, prompt="p", aspect_ratio=None, count=1, parent_turn_id=None,
            thread_id=None, reply_to_id=None, start_thread=False, lane=None,
        )

    async def queue(key: str, tokens: int) -> tuple[bool, Reservation | None]:
        statement = ledger.reserve_statement(
            key, guild_id=GUILD, user_id=USER, usage=estimate(tokens), provider="p", model="m"
        )
        created, (rows,) = await jobs.create(record(key), after=[statement])
        try:
            return created, await ledger.reservation_from(rows, key, GUILD, USER, tokens)
        except QuotaExceeded:
            return created, None

    created, held = await queue("a", 600)
    assert created and held is not None and held.tokens == 600
    # Over budget: the job row is queued, but nothing is held for it.
    created, held = await queue("b", 600)
    assert created and held is None
    await jobs.set_status("b", "failed", error="over budget")
    await ledger.release("a")  # room again
    # A replay of the refused job: not new, and it must not hold tokens for a dead job.
    created, _ = await queue("b", 600)
    assert not created
    assert [r.key for r in await ledger.open_reservations()] == []
    # A replay of a job still queued finds its reservation and changes nothing.
    created, held = await queue("c", 300)
    assert created and held is not None
    created, again = await queue("c", 300)
    assert not created and again == held
    assert [r.key for r in await ledger.open_reservations()] == ["c"]
