"""The ledger against a model, under random sequences of every operation (Hypothesis).

After every step, for every member and period that has a balance row:

- spent    == the sum of `total_tokens` over that member's entries of that period (charges
              and billed releases alike) recorded after the member's last reset in the period;
- reserved == the sum of `tokens` over that member's open reservations of that period;
- no counter is negative;

and for the current period, besides matching the model exactly:

- spent + reserved <= limit + granted (limit 0 = unlimited), unless since the last time it
  held a charge exceeded its reservation or an admin lowered the limit: the only two ways
  past the budget (bot/storage/ledger.py). Reservations themselves never go past it: every
  reserve must succeed exactly when the model says the estimate fits.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from bot.errors import QuotaExceeded
from bot.models import Usage
from bot.pricing import PriceTable
from bot.storage.db import Database
from bot.storage.ledger import DAY_SECONDS, Ledger, LedgerEntry, period_start

T = TypeVar("T")
Member = tuple[int, int]

MEMBERS: tuple[Member, ...] = ((1, 10), (2, 20))
START = 1_767_268_800 + 22 * 3600  # 2026-01-01 22:00 UTC: midnight is a few steps away

usages = st.builds(
    Usage,
    input_tokens=st.integers(0, 2_000),
    output_image_tokens=st.sampled_from([0, 1_120, 2_240]),
    output_text_tokens=st.integers(0, 200),
    thinking_tokens=st.integers(0, 400),
    reported=st.booleans(),
)


@dataclass
class ModelReservation:
    member: Member
    period: int
    tokens: int
    state: str = "open"
    entry: LedgerEntry | None = None


@dataclass
class ModelBalance:
    spent: int = 0
    reserved: int = 0
    granted: int = 0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class LedgerMachine(RuleBasedStateMachine):
    keys = Bundle("keys")
    base: Path | None = None  # where each run's database goes; the test sets it to tmp_path

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory(dir=self.base)
        self.clock = Clock(START)
        self.db = self.run(Database.open(Path(self.folder.name) / "peel.db"))
        self.ledger: Ledger
        self.default = 0
        self.overrides: dict[Member, int] = {}
        self.balances: dict[tuple[Member, int], ModelBalance] = {}
        self.reservations: dict[str, ModelReservation] = {}
        self.excused: set[tuple[Member, int]] = set()
        self.serial = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()
        self.folder.cleanup()

    # -- the model --------------------------------------------------------------------

    @property
    def period(self) -> int:
        return period_start(self.clock.now)

    def limit(self, member: Member) -> int:
        return self.overrides.get(member, self.default)

    def held(self, member: Member, period: int | None = None) -> ModelBalance:
        return self.balances.setdefault((member, period or self.period), ModelBalance())

    def fits(self, member: Member, extra: int = 0) -> bool:
        balance, limit = self.held(member), self.limit(member)
        return limit == 0 or balance.spent + balance.reserved + extra <= limit + balance.granted

    def close(self, key: str, usage: Usage, kind: str, entry: LedgerEntry | None) -> None:
        reservation = self.reservations[key]
        assert entry is not None
        if reservation.state != "open":
            assert entry == reservation.entry, "a closed key must return its first entry"
            return
        assert (entry.kind, entry.total_tokens, entry.reported) == (
            kind, usage.total, usage.reported,
        )
        assert entry.cost_micro_usd == PriceTable().cost_micro_usd(usage)
        reservation.state = "settled" if kind == "charge" else "released"
        reservation.entry = entry
        balance = self.held(reservation.member, reservation.period)
        balance.reserved -= reservation.tokens
        balance.spent += usage.total
        if usage.total > reservation.tokens:
            self.excused.add((reservation.member, reservation.period))

    # -- rules ------------------------------------------------------------------------

    @initialize(default=st.sampled_from([0, 2_000, 6_000]))
    def open_ledger(self, default: int) -> None:
        self.default = default
        self.ledger = Ledger(self.db, default_limit=default, prices=PriceTable(), clock=self.clock)

    # Two reserve rules so that reservations pile up between the other operations.
    @rule(target=keys, member=st.sampled_from(MEMBERS), tokens=st.integers(0, 1_200))
    def reserve_small(self, member: Member, tokens: int) -> Any:
        return self.reserve(member, tokens)

    @rule(target=keys, member=st.sampled_from(MEMBERS), tokens=st.integers(800, 3_000))
    def reserve_large(self, member: Member, tokens: int) -> Any:
        return self.reserve(member, tokens)

    def reserve(self, member: Member, tokens: int) -> Any:
        self.serial += 1
        key = f"job-{self.serial}"
        expected = self.fits(member, tokens)
        try:
            got = self.run(self.ledger.reserve(
                key, guild_id=member[0], user_id=member[1], usage=Usage(input_tokens=tokens),
                provider="fake", model="m",
            ))
        except QuotaExceeded as refused:
            assert not expected, "refused a reservation that fits"
            assert refused.needed == tokens
            return multiple()
        assert expected, "accepted a reservation that does not fit"
        assert (got.key, got.tokens, got.state) == (key, tokens, "open")
        assert got.period_start == self.period
        self.reservations[key] = ModelReservation(member, self.period, tokens)
        self.held(member).reserved += tokens
        return key

    @rule(key=keys, member=st.sampled_from(MEMBERS), tokens=st.integers(0, 3_000))
    def reserve_again(self, key: str, member: Member, tokens: int) -> None:
        got = self.run(self.ledger.reserve(
            key, guild_id=member[0], user_id=member[1], usage=Usage(input_tokens=tokens),
            provider="fake", model="m",
        ))
        known = self.reservations[key]
        assert (got.guild_id, got.user_id) == known.member
        assert (got.tokens, got.state) == (known.tokens, known.state)
        assert got.period_start == known.period

    @rule(key=keys, usage=usages)
    def settle(self, key: str, usage: Usage) -> None:
        self.close(key, usage, "charge", self.run(self.ledger.settle(key, usage)))

    @rule(key=keys, billed=st.none() | usages)
    def release(self, key: str, billed: Usage | None) -> None:
        entry = self.run(self.ledger.release(key, billed))
        self.close(key, billed or Usage(reported=False), "release", entry)

    @rule(member=st.sampled_from(MEMBERS), tokens=st.integers(1, 3_000))
    def grant(self, member: Member, tokens: int) -> None:
        balance = self.run(self.ledger.grant(*member, tokens, actor_id=7))
        self.held(member).granted += tokens
        assert balance.granted == self.held(member).granted

    @rule(member=st.sampled_from(MEMBERS), tokens=st.none() | st.just(0) | st.integers(1, 8_000))
    def set_limit(self, member: Member, tokens: int | None) -> None:
        self.run(self.ledger.set_limit(*member, tokens, actor_id=8))
        if tokens is None:
            self.overrides.pop(member, None)
        else:
            self.overrides[member] = tokens
        if not self.fits(member):
            self.excused.add((member, self.period))

    @rule(member=st.sampled_from(MEMBERS))
    def reset(self, member: Member) -> None:
        balance = self.run(self.ledger.reset(*member, actor_id=9))
        self.held(member).spent = 0
        assert balance.spent == 0

    @rule(seconds=st.sampled_from([60, 3_600, 2 * 3_600 + 1, DAY_SECONDS]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.now += seconds

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def current_balances_match_the_model(self) -> None:
        for member in MEMBERS:
            got = self.run(self.ledger.balance(*member))
            want, limit = self.held(member), self.limit(member)
            assert (got.spent, got.reserved, got.granted) == (
                want.spent, want.reserved, want.granted,
            )
            assert got.limit == (limit or None)
            left = limit + want.granted - want.spent - want.reserved
            assert got.remaining == (max(0, left) if limit else None)
            assert got.spent == sum(got.by_kind.values())
            if self.fits(member):
                self.excused.discard((member, self.period))
            else:
                assert (member, self.period) in self.excused, "over budget without a cause"

    @invariant()
    def stored_counters_agree_with_entries_and_reservations(self) -> None:
        rows = self.run(self.db.fetchall("""
            SELECT b.spent, b.reserved, b.granted,
                (SELECT IFNULL(SUM(e.total_tokens), 0) FROM ledger_entries AS e
                 WHERE e.guild_id = b.guild_id AND e.user_id = b.user_id
                   AND e.period_start = b.period_start AND e.id > b.counted_after_entry),
                (SELECT IFNULL(SUM(r.tokens), 0) FROM ledger_reservations AS r
                 WHERE r.guild_id = b.guild_id AND r.user_id = b.user_id
                   AND r.period_start = b.period_start AND r.state = 'open')
            FROM quota_balances AS b
        """))
        for spent, reserved, granted, charged, open_tokens in rows:
            assert min(spent, reserved, granted) >= 0
            assert spent == charged
            assert reserved == open_tokens

    @invariant()
    def open_reservations_match_the_model(self) -> None:
        got = {r.key for r in self.run(self.ledger.open_reservations())}
        assert got == {k for k, r in self.reservations.items() if r.state == "open"}


def test_ledger_state_machine(tmp_path: Path) -> None:
    budget = settings(
        max_examples=100,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine = type("LedgerMachineInTmp", (LedgerMachine,), {"base": tmp_path})
    run_state_machine_as_test(machine, settings=budget)
