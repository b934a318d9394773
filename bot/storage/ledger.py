"""The token ledger: each member's budget per server per day, reservations and charges.

One job, keyed by its interaction or message id, goes through:

    reserve(key, estimate) -> provider call -> settle(key, usage)    the provider answered
                                            -> release(key, billed)  the call failed

Each step is one SQL statement whose triggers (migrations/0002_ledger.sql) do the
bookkeeping, so a reservation fits the budget atomically or raises QuotaExceeded, and a
duplicated event finds its reservation or entry already there and changes nothing. Under
load, concurrent reserve/settle/release statements share commits (group_commit.py).

For one member and one period (a UTC day) every reservation checks

    spent + reserved + tokens <= limit + granted        (limit 0 = unlimited)

`spent` can still end above `limit + granted` in two deliberate ways: a settle records the
provider's real bill in full even when it exceeds the estimate that was reserved, and an
admin may lower a limit below what is already spent. New reservations then fail until the
period ends or an admin grants or resets. A reservation is charged to the period it was made
in, even when it is settled after midnight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import aiosqlite

from bot.errors import QuotaExceeded
from bot.models import Usage
from bot.pricing import PriceTable
from bot.storage.db import Database
from bot.storage.group_commit import GroupCommit, Statement

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400

ReservationState = Literal["open", "settled", "released"]
EntryKind = Literal["charge", "release"]
AuditAction = Literal["set_limit", "grant", "reset"]

# What a failed call billed when the provider said nothing: no tokens, and not reported.
_NOTHING_BILLED = Usage(reported=False)


def period_start(now: float) -> int:
    """The start of the budget period holding `now`: 00:00 UTC that day, in unix seconds."""
    seconds = int(now)
    return seconds - seconds % DAY_SECONDS


@dataclass(frozen=True, slots=True)
class Reservation:
    key: str
    guild_id: int
    user_id: int
    tokens: int
    state: ReservationState
    period_start: int
    created_at: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What one reservation was closed with: a charge (settle) or a release (failure)."""

    key: str
    guild_id: int
    user_id: int
    input_tokens: int
    output_image_tokens: int
    output_text_tokens: int
    thinking_tokens: int
    total_tokens: int
    cost_micro_usd: int
    reported: bool
    provider: str
    model: str
    kind: EntryKind
    created_at: int


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's budget this period.

    `spent`, `cost_micro_usd` and `by_kind` count the entries charged against the budget
    since the period began or an admin last reset it. `by_kind` has the keys "input",
    "output_image", "output_text" and "thinking".
    """

    limit: int | None
    spent: int
    reserved: int
    granted: int
    remaining: int | None
    period_start: int
    resets_at: int
    cost_micro_usd: int
    by_kind: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin change. `tokens` is what was set (set_limit: the new override, None = the
    default; reset: 0) or added (grant); `previous` is the value before it (the old
    override, the granted total, the spent total)."""

    guild_id: int
    user_id: int
    actor_id: int
    action: AuditAction
    tokens: int | None
    previous: int | None
    period_start: int
    created_at: int


def _columns(cls: type) -> str:
    return ", ".join(field.name for field in fields(cls))


_LIMIT = (
    "COALESCE((SELECT limit_tokens FROM quota_limits"
    " WHERE guild_id = :guild_id AND user_id = :user_id), :default_limit)"
)

_RESERVE = f"""
INSERT INTO ledger_reservations
    (key, guild_id, user_id, period_start, tokens, provider, model, created_at)
SELECT :key, :guild_id, :user_id, :period_start, :tokens, :provider, :model, :now
FROM (SELECT {_LIMIT} AS limit_tokens) AS l
LEFT JOIN quota_balances AS b
    ON b.guild_id = :guild_id AND b.user_id = :user_id AND b.period_start = :period_start
WHERE (l.limit_tokens = 0
    OR IFNULL(b.spent, 0) + IFNULL(b.reserved, 0) + :tokens
        <= l.limit_tokens + IFNULL(b.granted, 0))
    {{only_if}}
ON CONFLICT (key) DO NOTHING
RETURNING {_columns(Reservation)}
"""
# For a job queued in the same unit (JobStore.create): nothing once it is not queued.
_RESERVE_FOR_QUEUED_JOB = _RESERVE.format(
    only_if="AND EXISTS (SELECT 1 FROM jobs WHERE key = :key AND status = 'queued')"
)
_RESERVE = _RESERVE.format(only_if="")

_CLOSE = f"""
INSERT INTO ledger_entries
    (key, guild_id, user_id, period_start, input_tokens, output_image_tokens,
     output_text_tokens, thinking_tokens, total_tokens, cost_micro_usd, reported,
     provider, model, kind, created_at)
SELECT key, guild_id, user_id, period_start, :input, :output_image, :output_text,
    :thinking, :total, :cost, :reported, provider, model, :kind, :now
FROM ledger_reservations WHERE key = :key AND state = 'open'
ON CONFLICT (key) DO NOTHING
RETURNING {_columns(LedgerEntry)}
"""

_BALANCE = f"""
SELECT {_LIMIT} AS limit_tokens,
    IFNULL(b.spent, 0) AS spent, IFNULL(b.reserved, 0) AS reserved,
    IFNULL(b.granted, 0) AS granted, IFNULL(b.cost_micro_usd, 0) AS cost_micro_usd,
    IFNULL(b.input_tokens, 0) AS input, IFNULL(b.output_image_tokens, 0) AS output_image,
    IFNULL(b.output_text_tokens, 0) AS output_text, IFNULL(b.thinking_tokens, 0) AS thinking
FROM (SELECT 1) LEFT JOIN quota_balances AS b
    ON b.guild_id = :guild_id AND b.user_id = :user_id AND b.period_start = :period_start
"""

_GRANT = """
INSERT INTO quota_balances (guild_id, user_id, period_start, granted) VALUES (?, ?, ?, ?)
ON CONFLICT (guild_id, user_id, period_start) DO UPDATE SET granted = granted + excluded.granted
RETURNING granted
"""

# The mark makes `spent` equal the sum of this period's entries above it.
_RESET = """
INSERT INTO quota_balances (guild_id, user_id, period_start, counted_after_entry)
VALUES (?, ?, ?, (SELECT IFNULL(MAX(id), 0) FROM ledger_entries))
ON CONFLICT (guild_id, user_id, period_start) DO UPDATE SET
    spent = 0, input_tokens = 0, output_image_tokens = 0, output_text_tokens = 0,
    thinking_tokens = 0, cost_micro_usd = 0, counted_after_entry = excluded.counted_after_entry
"""

_SET_LIMIT = """
INSERT INTO quota_limits (guild_id, user_id, limit_tokens, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (guild_id, user_id) DO UPDATE
SET limit_tokens = excluded.limit_tokens, updated_at = excluded.updated_at
"""

_LIMIT_OVERRIDE = "SELECT limit_tokens FROM quota_limits WHERE guild_id = ? AND user_id = ?"
_SPENT = "SELECT spent FROM quota_balances WHERE guild_id = ? AND user_id = ? AND period_start = ?"
_KINDS = ("input", "output_image", "output_text", "thinking")

_AUDIT = f"INSERT INTO quota_audit ({_columns(AuditEntry)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


class Ledger:
    """Budgets, reservations, charges and admin overrides, all in the one database."""

    def __init__(
        self,
        db: Database,
        *,
        default_limit: int,
        prices: PriceTable,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if default_limit < 0:
            raise ValueError("default_limit must be 0 (unlimited) or more")
        self._db = db
        # Reserve and settle/release are single statements: under load they share commits
        # (with each other and with the other stores' one-statement writes).
        self._writes: GroupCommit = db.group
        self._default_limit = default_limit
        self._prices = prices
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock())

    async def reserve(
        self, key: str, *, guild_id: int, user_id: int, usage: Usage, provider: str, model: str
    ) -> Reservation:
        """Hold `usage.total` tokens for the job `key`, or raise QuotaExceeded.

        The same key again returns the reservation it already has, whatever its state.
        """
        params = self._reserve_params(key, guild_id, user_id, usage, provider, model)
        rows = await self._writes.write(_RESERVE, params)
        return await self.reservation_from(rows, key, guild_id, user_id, params["tokens"])

    def reserve_statement(
        self, key: str, *, guild_id: int, user_id: int, usage: Usage, provider: str, model: str
    ) -> Statement:
        """`reserve` as a statement for a unit of the group commit, after the statement that
        queues the job `key`. It reserves only while that job is queued, so a duplicated
        event for a job that already ended (or was refused) holds nothing. Read its rows
        with `reservation_from`."""
        params = self._reserve_params(key, guild_id, user_id, usage, provider, model)
        return _RESERVE_FOR_QUEUED_JOB, params

    async def reservation_from(
        self, rows: list[aiosqlite.Row], key: str, guild_id: int, user_id: int, tokens: int
    ) -> Reservation:
        """What `reserve` answers, from the rows of its statement: the new reservation, the
        one `key` already had, or QuotaExceeded."""
        if rows:
            return _reservation(rows[0])
        existing = await self._reservation(key)
        if existing is not None:
            return existing
        balance = await self.balance(guild_id, user_id)
        raise QuotaExceeded(tokens, balance.remaining or 0, balance.resets_at)

    def _reserve_params(
        self, key: str, guild_id: int, user_id: int, usage: Usage, provider: str, model: str
    ) -> dict[str, Any]:
        now = self._now()
        return {
            "key": key, "guild_id": guild_id, "user_id": user_id,
            "tokens": _checked(usage).total, "period_start": period_start(now),
            "provider": provider, "model": model, "now": now,
            "default_limit": self._default_limit,
        }

    async def settle(self, key: str, usage: Usage) -> LedgerEntry:
        """Charge `usage` in full (even beyond the reservation) and release the rest.

        A key already settled or released returns its entry and changes nothing.
        """
        entry = await self._close(key, usage, "charge")
        if entry is None:
            raise KeyError(f"no reservation with key {key!r}")
        return entry

    async def release(self, key: str, billed: Usage | None = None) -> LedgerEntry | None:
        """The job failed: charge only what the provider `billed`, release the rest.

        Returns None when `key` holds no reservation (the job never reserved anything).
        """
        return await self._close(key, billed or _NOTHING_BILLED, "release")

    async def _close(self, key: str, usage: Usage, kind: EntryKind) -> LedgerEntry | None:
        return await self._insert_entry(key, usage, kind) or await self._entry(key)

    def settle_statement(self, key: str, usage: Usage) -> Statement:
        """`settle` as a statement for a unit of the group commit, so that the charge
        commits together with what it is for (the stored turn). It changes nothing when
        `key` is not open, like `settle`."""
        return _CLOSE, self._close_params(key, usage, "charge")

    async def _insert_entry(self, key: str, usage: Usage, kind: EntryKind) -> LedgerEntry | None:
        """The new entry closing `key`, or None when it was not open (or does not exist)."""
        rows = await self._writes.write(_CLOSE, self._close_params(key, usage, kind))
        return _entry(rows[0]) if rows else None

    def _close_params(self, key: str, usage: Usage, kind: EntryKind) -> dict[str, object]:
        _checked(usage)
        return {
            "key": key, "input": usage.input_tokens, "output_image": usage.output_image_tokens,
            "output_text": usage.output_text_tokens, "thinking": usage.thinking_tokens,
            "total": usage.total, "cost": self._prices.cost_micro_usd(usage),
            "reported": usage.reported, "kind": kind, "now": self._now(),
        }

    async def balance(self, guild_id: int, user_id: int) -> Balance:
        sql, params = self.balance_statement(guild_id, user_id)
        row = await self._db.fetchone(sql, params)
        assert row is not None  # a LEFT JOIN from a one-row table always gives one row
        return self.balance_from(row, params["period_start"])

    def balance_statement(self, guild_id: int, user_id: int) -> tuple[str, dict[str, Any]]:
        """The balance read as a statement; it can close a unit of the group commit, to
        read the balance that unit left in the same trip. Read its row with `balance_from`."""
        return _BALANCE, {
            "guild_id": guild_id, "user_id": user_id,
            "period_start": period_start(self._now()), "default_limit": self._default_limit,
        }

    @staticmethod
    def balance_from(row: aiosqlite.Row, start: int) -> Balance:
        spent, reserved, granted = row["spent"], row["reserved"], row["granted"]
        limit = row["limit_tokens"] or None
        remaining = None if limit is None else max(0, limit + granted - spent - reserved)
        return Balance(
            limit=limit, spent=spent, reserved=reserved, granted=granted, remaining=remaining,
            period_start=start, resets_at=start + DAY_SECONDS,
            cost_micro_usd=row["cost_micro_usd"], by_kind={kind: row[kind] for kind in _KINDS},
        )

    async def set_limit(
        self, guild_id: int, user_id: int, tokens: int | None, *, actor_id: int
    ) -> Balance:
        """Override a member's limit: None goes back to the default, 0 means unlimited."""
        if tokens is not None and tokens < 0:
            raise ValueError("a limit is 0 (unlimited) or more tokens")
        now = self._now()
        member = (guild_id, user_id)
        async with self._db.transaction() as conn:
            previous = await _scalar(conn, _LIMIT_OVERRIDE, member)
            if tokens is None:
                await conn.execute(
                    "DELETE FROM quota_limits WHERE guild_id = ? AND user_id = ?", member
                )
            else:
                await conn.execute(_SET_LIMIT, (*member, tokens, now))
            await _audit(conn, member, actor_id, "set_limit", tokens, previous, now)
        log.info("user %d in guild %d limit set to %s by %d", user_id, guild_id, tokens, actor_id)
        return await self.balance(guild_id, user_id)

    async def grant(self, guild_id: int, user_id: int, tokens: int, *, actor_id: int) -> Balance:
        """Add `tokens` to the member's budget for the current period only."""
        if tokens <= 0:
            raise ValueError("a grant is a positive number of tokens")
        now = self._now()
        member = (guild_id, user_id)
        async with self._db.transaction() as conn:
            rows = await conn.execute_fetchall(_GRANT, (*member, period_start(now), tokens))
            previous = next(iter(rows))["granted"] - tokens
            await _audit(conn, member, actor_id, "grant", tokens, previous, now)
        log.info("user %d in guild %d granted %d tokens by %d", user_id, guild_id, tokens, actor_id)
        return await self.balance(guild_id, user_id)

    async def reset(self, guild_id: int, user_id: int, *, actor_id: int) -> Balance:
        """Set this period's spend back to 0; entries stay, open reservations stay held."""
        now = self._now()
        start = period_start(now)
        member = (guild_id, user_id)
        async with self._db.transaction() as conn:
            previous = await _scalar(conn, _SPENT, (*member, start))
            await conn.execute(_RESET, (*member, start))
            await _audit(conn, member, actor_id, "reset", 0, previous or 0, now)
        log.info("spend of user %d in guild %d reset by %d", user_id, guild_id, actor_id)
        return await self.balance(guild_id, user_id)

    async def recent(self, guild_id: int, user_id: int, limit: int = 5) -> list[LedgerEntry]:
        rows = await self._db.fetchall(
            f"SELECT {_columns(LedgerEntry)} FROM ledger_entries"
            " WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, user_id, limit),
        )
        return [_entry(row) for row in rows]

    async def open_reservations(self) -> list[Reservation]:
        rows = await self._db.fetchall(
            f"SELECT {_columns(Reservation)} FROM ledger_reservations"
            " WHERE state = 'open' ORDER BY created_at, key"
        )
        return [_reservation(row) for row in rows]

    async def recover(self, keep: Collection[str] = ()) -> int:
        """At start-up: release every open reservation not in `keep` (jobs still queued)."""
        released, keep = 0, set(keep)
        for reservation in await self.open_reservations():
            if reservation.key in keep:
                continue
            if await self._insert_entry(reservation.key, _NOTHING_BILLED, "release") is None:
                continue  # closed meanwhile by its own job
            released += 1
            log.warning(
                "released reservation %s (user %d, guild %d, %d tokens): its job did not finish",
                reservation.key, reservation.user_id, reservation.guild_id, reservation.tokens,
            )
        return released

    async def audit_log(
        self, guild_id: int, user_id: int | None = None, limit: int = 20
    ) -> list[AuditEntry]:
        where, params = "guild_id = ?", [guild_id]
        if user_id is not None:
            where, params = where + " AND user_id = ?", [*params, user_id]
        rows = await self._db.fetchall(
            f"SELECT {_columns(AuditEntry)} FROM quota_audit"
            f" WHERE {where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [AuditEntry(**_as_dict(row)) for row in rows]

    async def _reservation(self, key: str) -> Reservation | None:
        row = await self._db.fetchone(
            f"SELECT {_columns(Reservation)} FROM ledger_reservations WHERE key = ?", (key,)
        )
        return None if row is None else _reservation(row)

    async def _entry(self, key: str) -> LedgerEntry | None:
        row = await self._db.fetchone(
            f"SELECT {_columns(LedgerEntry)} FROM ledger_entries WHERE key = ?", (key,)
        )
        return None if row is None else _entry(row)


def _checked(usage: Usage) -> Usage:
    counts = (usage.input_tokens, usage.output_image_tokens, usage.output_text_tokens,
              usage.thinking_tokens, usage.cost_usd or 0)
    if min(counts) < 0:
        raise ValueError(f"usage cannot be negative: {usage}")
    return usage


async def _scalar(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


async def _audit(
    conn: aiosqlite.Connection, member: tuple[int, int], actor_id: int, action: AuditAction,
    tokens: int | None, previous: int | None, now: int,
) -> None:
    """The audit row every admin change writes, inside the change's own transaction."""
    row = (*member, actor_id, action, tokens, previous, period_start(now), now)
    await conn.execute(_AUDIT, row)


def _as_dict(row: aiosqlite.Row) -> dict[str, Any]:
    return {name: row[name] for name in row.keys()}  # Row has keys() but is no Mapping


def _reservation(row: aiosqlite.Row) -> Reservation:
    return Reservation(**_as_dict(row))


def _entry(row: aiosqlite.Row) -> LedgerEntry:
    values = _as_dict(row)
    values["reported"] = bool(values["reported"])
    return LedgerEntry(**values)
