"""Ledger throughput: reserve+settle pairs per second on a temporary SQLite file.

    .venv/bin/python bench/ledger_bench.py [--pairs 4000] [--runs 3]

Closed loop: C coroutines share one Ledger (one aiosqlite connection, as in the bot) and
each runs reserve -> settle back to back until PAIRS pairs are done, at C = 1, 50 and 500,
with synchronous=NORMAL and FULL. Jobs are spread over 50 members with a finite budget, so
every reservation evaluates its budget check. Target (issue): >= 2000 pairs/s.
Compare with specs/performance.md section 3a.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bot.models import Usage
from bot.pricing import PriceTable
from bot.storage.db import Database
from bot.storage.ledger import Ledger

MEMBERS = 50
ESTIMATE = Usage(input_tokens=400, output_image_tokens=1_120, thinking_tokens=300, reported=False)
BILLED = Usage(input_tokens=380, output_image_tokens=1_120, thinking_tokens=120)


async def one_run(folder: Path, synchronous: str, concurrency: int, pairs: int) -> dict[str, float]:
    db = await Database.open(folder / "bench.db", synchronous=synchronous)
    ledger = Ledger(db, default_limit=10**12, prices=PriceTable())
    reserve_ms: list[float] = []
    settle_ms: list[float] = []
    counter = iter(range(pairs))

    async def worker() -> None:
        for i in counter:
            key = f"job-{i}"
            t0 = time.perf_counter()
            await ledger.reserve(
                key, guild_id=1, user_id=i % MEMBERS, usage=ESTIMATE, provider="bench", model="m"
            )
            t1 = time.perf_counter()
            await ledger.settle(key, BILLED)
            reserve_ms.append((t1 - t0) * 1000)
            settle_ms.append((time.perf_counter() - t1) * 1000)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await check(ledger, pairs)
    finally:
        await db.close()
    return {
        "rate": pairs / elapsed,
        "reserve_p50": statistics.median(reserve_ms),
        "reserve_p99": _p99(reserve_ms),
        "settle_p50": statistics.median(settle_ms),
        "settle_p99": _p99(settle_ms),
        "max": max(map(max, (reserve_ms, settle_ms))),
    }


async def check(ledger: Ledger, pairs: int) -> None:
    """The run must also have been right: nothing held, every pair charged once."""
    assert await ledger.open_reservations() == []
    spent = 0
    for user in range(MEMBERS):
        balance = await ledger.balance(1, user)
        assert balance.reserved == 0
        spent += balance.spent
    assert spent == pairs * BILLED.total, (spent, pairs * BILLED.total)


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def main(pairs: int, runs: int) -> None:
    print(f"reserve+settle pairs/s, {pairs} pairs per run, {runs} runs, one aiosqlite connection")
    print(f"{'sync':<7}{'C':>5}{'pairs/s (min-max)':>22}{'reserve p50/p99 ms':>22}"
          f"{'settle p50/p99 ms':>21}{'max ms':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for synchronous in ("NORMAL", "FULL"):
            for concurrency in (1, 50, 500):
                results = []
                for run in range(runs):
                    folder = Path(tmp) / f"{synchronous}-{concurrency}-{run}"
                    folder.mkdir()
                    results.append(await one_run(folder, synchronous, concurrency, pairs))
                _report(synchronous, concurrency, results)


def _report(synchronous: str, concurrency: int, results: list[dict[str, float]]) -> None:
    rates = [r["rate"] for r in results]
    mid = {name: statistics.median(r[name] for r in results) for name in results[0]}
    rate = f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
    reserve = f"{mid['reserve_p50']:.2f} / {mid['reserve_p99']:.2f}"
    settle = f"{mid['settle_p50']:.2f} / {mid['settle_p99']:.2f}"
    worst = max(r["max"] for r in results)
    print(f"{synchronous:<7}{concurrency:>5}{rate:>22}{reserve:>22}{settle:>21}{worst:>9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.pairs, args.runs))
