"""Child process for tests/test_ledger_crash.py: write to the ledger until SIGKILLed.

    python tests/ledger_crash_child.py DB_PATH hold|churn CLOCK

hold:  reserve five jobs, settle one, print "reserved", then sleep.
churn: print "reserved" after the first reservations, then reserve, settle and release
       without pause, so the kill lands in the middle of writes.
"""

from __future__ import annotations

import asyncio
import sys

from bot.models import Usage
from bot.pricing import PriceTable
from bot.storage.db import Database
from bot.storage.ledger import Ledger

GUILD, USER = 111, 222


async def main(path: str, mode: str, now: float) -> None:
    db = await Database.open(path)
    ledger = Ledger(db, default_limit=0, prices=PriceTable(), clock=lambda: now)

    async def reserve(key: str) -> None:
        await ledger.reserve(
            key, guild_id=GUILD, user_id=USER, usage=Usage(input_tokens=1_500, reported=False),
            provider="fake", model="m",
        )

    for i in range(5):
        await reserve(f"hold-{i}")
    await ledger.settle("hold-0", Usage(input_tokens=900))
    print("reserved", flush=True)
    if mode == "hold":
        await asyncio.sleep(120)
        return
    serial = 0
    while True:
        serial += 1
        key = f"churn-{serial}"
        await reserve(key)
        if serial % 3 == 0:
            await ledger.release(key, Usage(input_tokens=serial % 50))
        elif serial % 3 == 1:
            await ledger.settle(key, Usage(input_tokens=1_000 + serial % 700))
        # every third one stays open, as if its job were still running


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
