"""Load benchmark: the real Peel bot running N members x M /imagine jobs.

    .venv/bin/python -m bench.load                       # 200 members x 5 jobs, U = 2 s
    .venv/bin/python -m bench.load --arrival poisson --rate 40 --members 100 --jobs 10

Two processes. This one runs the loopback fake Discord (REST, gateway, CDN) and the fake
Gemini, drives the members and takes every latency at the fake Discord. The bot runs in a
process of its own (`bench/_bot.py`), built by the production `open_runtime` with
MAX_CONCURRENT_JOBS, MAX_JOBS_PER_USER and an unlimited quota, and measures its own event-loop
lag, CPU and peak RSS, so the fakes' work does not show up in the bot's figures (the two
processes still share the machine's cores).

Arrival modes:

- burst: every member sends a command at the same moment, then its next one as soon as its
  result is posted (closed loop): `members` jobs in flight, all of the first wave at once;
- poisson: open loop, commands at `--rate` per second with exponential gaps, members in turn.

Reported, from the measurement window after a warm-up:

- acknowledgement: interaction dispatched by the fake -> the bot's (deferred) callback there;
- e2e / U: interaction dispatched -> the result message with its attachment received, over
  the fake model's latency U (so 1.000 is the floor);
- throughput: jobs completed per second over the ideal MAX_CONCURRENT_JOBS / U (capped by the
  offered load: `members` / U in burst mode, `--rate` in poisson mode);
- event-loop lag p99 and max (a 5 ms ticker on the bot's loop), bot CPU per job, peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._bot import LagTicker
from bench.fakes import BenchDiscord, BenchGemini, JobTimes, noise_png
from tests.fakes.discord_models import FakeUser
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeGemini

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- the bot process


class BotProcess:
    """The bot in its own interpreter; see bench/_bot.py for the protocol."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench._bot", json.dumps(self.config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
            cwd=ROOT, limit=256 * 1024 * 1024,
        )
        log.close()

    async def ask(self, command: str, timeout: float = 30) -> dict[str, Any]:
        process = self.process
        assert process is not None and process.stdin is not None and process.stdout is not None
        process.stdin.write(f"{command}\n".encode())
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the bot process exited; see {self.log_path}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def close(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# ---------------------------------------------------------------------------- driving


@dataclass
class Run:
    fake: BenchDiscord
    members: list[FakeUser]
    timeout: float
    ids: list[int] = field(default_factory=list)
    numbers: dict[int, int] = field(default_factory=dict)  # interaction id -> job number
    in_flight: int = 0
    peak_in_flight: int = 0

    async def job(self, user: FakeUser, number: int) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            prompt = f"a lighthouse on a cliff at dusk, study {number}"
            interaction = await self.fake.slash("imagine", {"prompt": prompt}, user=user)
            self.ids.append(interaction.id)
            self.numbers[interaction.id] = number
            await self.fake.result(interaction.id, self.timeout)
        finally:
            self.in_flight -= 1

    async def burst(self, jobs_per_member: int) -> None:
        async def member(index: int, user: FakeUser) -> None:
            for turn in range(jobs_per_member):
                await self.job(user, index * jobs_per_member + turn)

        await asyncio.gather(*(member(i, user) for i, user in enumerate(self.members)))

    async def poisson(self, total: int, rate: float, rng: random.Random) -> None:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        due = loop.time()
        for number in range(total):
            due += rng.expovariate(rate)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            user = self.members[number % len(self.members)]
            tasks.append(asyncio.create_task(self.job(user, number)))
        await asyncio.gather(*tasks)


# ---------------------------------------------------------------------------- reporting


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figure:
    name: str
    value: float
    shown: str
    target: str = ""
    met: bool | None = None


def rate_of(args: argparse.Namespace, done: list[JobTimes]) -> tuple[float, float]:
    """Completed jobs per second, and the rate the arrivals offered.

    burst: all jobs over the span from the first command to the last result. poisson: the
    results that landed in the arrival span shifted by the median e2e, over that span,
    against the arrivals actually drawn (ramp-up and drain say nothing about capacity).
    """
    if len(done) < 2:
        return 0.0, math.nan
    first = min(j.created for j in done)
    if args.arrival == "burst":
        span = max(max(j.done for j in done) - first, 1e-9)
        return len(done) / span, min(args.members, args.max_concurrent) / args.latency
    last = max(j.created for j in done)
    span = max(last - first, 1e-9)
    shift = statistics.median(j.done - j.created for j in done)
    landed = sum(1 for j in done if first + shift <= j.done <= last + shift)
    return landed / span, (len(done) - 1) / span


def summarise(
    args: argparse.Namespace, run: Run, bot: dict[str, Any], image_bytes: int, wall: float
) -> tuple[list[Figure], dict[str, Any]]:
    fake = run.fake
    jobs = [fake.finished.get(i) for i in run.ids]
    done = [j for j in jobs if j is not None and j.error is None]
    failed = len(run.ids) - len(done)
    acks = [(j.acknowledged - j.created) * 1000
            for j in jobs if j is not None and j.acknowledged is not None]
    ratios = [(j.done - j.created) / args.latency for j in done]
    throughput, offered = rate_of(args, done)
    ideal = args.max_concurrent / args.latency
    lag = [s * 1000 for s in bot["lag_s"]]
    fake_lag = [s * 1000 for s in bot["fakes_lag_s"]]
    cpu_ms = bot["cpu_s"] * 1000 / max(len(done), 1)
    loop_cpu_ms = bot["loop_cpu_s"] * 1000 / max(len(done), 1)
    peak_mb = max(bot["peak_rss_kb"], 0) / 1024
    figures = [
        Figure("ack p50", percentile(acks, 50), f"{percentile(acks, 50):.1f} ms"),
        Figure("ack p99", percentile(acks, 99), f"{percentile(acks, 99):.1f} ms",
               "<= 30 ms", percentile(acks, 99) <= 30),
        Figure("ack max", max(acks, default=math.nan), f"{max(acks, default=math.nan):.1f} ms",
               "<= 300 ms", max(acks, default=math.inf) <= 300),
        Figure("e2e/U p50", percentile(ratios, 50), f"{percentile(ratios, 50):.4f}",
               "<= 1.01", percentile(ratios, 50) <= 1.01),
        Figure("e2e/U p99", percentile(ratios, 99), f"{percentile(ratios, 99):.4f}",
               "<= 1.03", percentile(ratios, 99) <= 1.03),
        Figure("e2e/U max", max(ratios, default=math.nan),
               f"{max(ratios, default=math.nan):.4f}"),
        Figure("throughput", throughput / ideal,
               f"{throughput:.1f} jobs/s = {throughput / ideal:.3f} of {ideal:.0f}/s"
               f" ({throughput / offered:.3f} of the {offered:.1f}/s offered)",
               ">= 0.97", throughput / min(ideal, offered) >= 0.97),
        Figure("loop lag p99", percentile(lag, 99), f"{percentile(lag, 99):.1f} ms",
               "<= 10 ms", percentile(lag, 99) <= 10),
        Figure("loop lag max", max(lag, default=math.nan), f"{max(lag, default=math.nan):.1f} ms",
               "<= 50 ms", max(lag, default=math.inf) <= 50),
        Figure("peak RSS", peak_mb, f"{peak_mb:.0f} MB", "<= 600 MB", peak_mb <= 600),
        Figure("bot CPU/job", cpu_ms,
               f"{cpu_ms:.1f} ms (kernel {bot['sys_s'] * 1000 / max(len(done), 1):.1f}, "
               f"loop thread {loop_cpu_ms:.1f} ms, "
               f"utilisation {bot['loop_cpu_s'] / max(bot['wall_s'], 1e-9):.2f}; "
               f"{bot['minor_faults'] / max(len(done), 1):.0f} page faults)"),
    ]
    facts = {
        "jobs": len(run.ids), "completed": len(done), "failed": failed,
        "peak_in_flight": run.peak_in_flight, "wall_s": wall, "image_bytes": image_bytes,
        "bot_cores": bot["cpu_s"] / wall, "fakes_cores": bot["fakes_cpu_s"] / wall,
        "other_cores": bot["others_cpu_s"] / wall,
        "fakes_lag_ms": (percentile(fake_lag, 99), max(fake_lag, default=math.nan)),
        "loop_cpu_ms_per_job": loop_cpu_ms,
        "gc_ms": [p * 1000 for p in bot["gc_pauses_s"]],
        "gc_by_generation": {
            generation: [p * 1000 for p, g in zip(bot["gc_pauses_s"], bot["gc_generations"],
                                                  strict=True) if g == generation]
            for generation in (0, 1, 2)
        },
        "gc_objects": bot["gc_objects"],
        "errors": sorted({j.error or "" for j in jobs if j is not None and j.error})[:5],
        "figures": {f.name: f.value for f in figures},
    }
    return figures, facts


def phases(run: Run, calls: dict[int, tuple[float, float]]) -> dict[str, list[float]]:
    """Each completed job's overhead split at the upstream call, in ms: dispatched -> the
    call read by the fake upstream, and the answer written -> the result at fake Discord;
    the second split again where the request carrying the result reached fake Discord."""
    before: list[float] = []
    after: list[float] = []
    bot: list[float] = []
    upload: list[float] = []
    for iid in run.ids:
        job = run.fake.finished.get(iid)
        call = calls.get(run.numbers.get(iid, -1))
        if job is None or job.error is not None or call is None:
            continue
        before.append((call[0] - job.created) * 1000)
        after.append((job.done - call[1]) * 1000)
        if job.sending is not None:
            bot.append((job.sending - call[1]) * 1000)
            upload.append((job.done - job.sending) * 1000)
    return {"dispatched -> upstream call": before, "upstream answer -> result posted": after,
            "  answer -> upload request arrives": bot,
            "  upload arrives -> result posted": upload}


def print_phases(split: dict[str, list[float]]) -> None:
    print()
    print(f"| {'overhead outside U, per job':<44} |  p50 ms |  p90 ms |  p99 ms |  max ms |")
    print(f"|{'-' * 46}|---------|---------|---------|---------|")
    for label, ms in split.items():
        print(f"| {label:<44} | {percentile(ms, 50):>7.1f} | {percentile(ms, 90):>7.1f} "
              f"| {percentile(ms, 99):>7.1f} | {max(ms, default=math.nan):>7.1f} |")


def print_trace(trace: dict[str, list[float]]) -> None:
    print()
    print(f"| {'step (wall time per call)':<44} | calls |  p50 ms |  p99 ms |  max ms |")
    print(f"|{'-' * 46}|-------|---------|---------|---------|")
    for label, samples in trace.items():
        ms = [s * 1000 for s in samples]
        print(f"| {label:<44} | {len(ms):>5} | {percentile(ms, 50):>7.1f} "
              f"| {percentile(ms, 99):>7.1f} | {max(ms, default=math.nan):>7.1f} |")


def print_slow_callbacks(slow: list[tuple[float, str]], limit: int = 15) -> None:
    """Loop callbacks over the threshold, grouped by the code they ran, worst first."""
    groups: dict[str, list[float]] = {}
    for took, where in slow:
        groups.setdefault(where, []).append(took * 1000)
    print()
    print(f"{len(slow)} loop callbacks over the threshold{':' if slow else ''}")
    ranked = sorted(groups.items(), key=lambda item: -max(item[1]))
    for where, times in ranked[:limit]:
        print(f"  {len(times):>5} x, max {max(times):6.1f} ms  {where}")


def describe(args: argparse.Namespace, image_bytes: int) -> str:
    if args.arrival == "burst":
        shape = (f"burst: {args.members} members x {args.jobs} jobs back to back "
                 f"({args.members} in flight)")
    else:
        shape = (f"poisson: {args.members * args.jobs} jobs at {args.rate:g}/s from "
                 f"{args.members} members")
    return (f"{shape}; U = {args.latency:g} s; result {image_bytes / 1e6:.2f} MB "
            f"{args.image_edge}x{args.image_edge} PNG; MAX_CONCURRENT_JOBS {args.max_concurrent}")


def print_report(
    args: argparse.Namespace, figures: list[Figure], facts: dict[str, Any]
) -> None:
    print(describe(args, facts["image_bytes"]))
    print(f"completed {facts['completed']}/{facts['jobs']} (failed {facts['failed']}), "
          f"peak in flight {facts['peak_in_flight']}, measured for {facts['wall_s']:.1f} s")
    print(f"CPU cores used: bot {facts['bot_cores']:.2f}, fakes and driver "
          f"{facts['fakes_cores']:.2f}, other processes {facts['other_cores']:.2f} "
          f"(of {os.cpu_count()}); the fakes' loop lag p99 {facts['fakes_lag_ms'][0]:.0f} ms, "
          f"max {facts['fakes_lag_ms'][1]:.0f} ms")
    gc_ms = facts["gc_ms"]
    print(f"garbage collector: {len(gc_ms)} pauses, {sum(gc_ms):.0f} ms in all, "
          f"max {max(gc_ms, default=0):.1f} ms; {facts['gc_objects']:,} objects tracked at the end")
    print("  by generation: " + "; ".join(
        f"{g}: {len(ms)} pauses, max {max(ms, default=0):.1f} ms"
        for g, ms in facts["gc_by_generation"].items()))
    for error in facts["errors"]:
        print(f"  refusal seen: {error[:120]}")
    print()
    print(f"| {'metric':<13} | {'measured':<58} | {'target':<9} |    |")
    print(f"|{'-' * 15}|{'-' * 60}|{'-' * 11}|----|")
    for figure in figures:
        mark = "" if figure.met is None else ("ok" if figure.met else "MISS")
        print(f"| {figure.name:<13} | {figure.shown:<58} | {figure.target:<9} | {mark:<2} |")


# ---------------------------------------------------------------------------- main


def bot_config(args: argparse.Namespace, fake: FakeDiscord, gemini: FakeGemini,
               data_dir: Path) -> dict[str, Any]:
    per_user = args.max_jobs_per_user or min(100, max(args.jobs, 10))
    return {
        "lag_interval": args.lag_interval,
        "trace": args.trace,
        "slow_callback": args.slow_callback / 1000,
        "profile": str(Path(args.profile).resolve()) if args.profile else None,
        "settings": {
            "discord_token": fake.token,
            "discord_api_base_url": fake.base_url,
            "discord_gateway_url": fake.gateway_url,
            "discord_dev_guild_id": fake.guild_id,
            "image_provider": "gemini",
            "gemini_api_key": gemini.api_key,
            "gemini_base_url": gemini.base_url,
            "data_dir": str(data_dir),
            "quota_tokens_per_day": 0,
            "max_concurrent_jobs": args.max_concurrent,
            "max_jobs_per_user": per_user,
            "provider_timeout": args.latency + 60,
            "log_level": args.log_level,
        },
    }


async def warm_up(run: Run, gemini: FakeGemini, count: int) -> None:
    """First calls pay for lazy imports, pools and connections; keep them out of the figures."""
    latency, gemini.latency = gemini.latency, 0.05
    await asyncio.gather(*(run.job(run.members[i % len(run.members)], -1 - i)
                           for i in range(count)))
    gemini.latency = latency
    run.ids.clear()
    run.peak_in_flight = 0


async def wait_for_bot(fake: FakeDiscord, bot: BotProcess) -> None:
    deadline = time.monotonic() + 60
    while not (fake.gateway.connected and fake.gateway.current is not None
               and fake.gateway.current.ready and "imagine" in fake.commands):
        process = bot.process
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"the bot process exited; see {bot.log_path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bot did not connect within 60 s; see {bot.log_path}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # on_ready and job recovery


async def sweep(fake: BenchDiscord, gemini: FakeGemini) -> None:
    """Drop what the fakes record per request: a long run would keep every upload."""
    while True:
        await asyncio.sleep(1.0)
        fake.requests.clear()
        gemini.requests.clear()


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy so far (from /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


async def main_async(args: argparse.Namespace) -> int:
    image = noise_png(int(args.image_mb * 1e6), args.image_edge)
    fake = BenchDiscord()
    gemini = BenchGemini(image=image)
    gemini.latency = args.latency
    members = [fake.add_member(f"member{i}") for i in range(args.members)]
    await fake.start()
    await gemini.start()
    sweeper = asyncio.create_task(sweep(fake, gemini))
    with tempfile.TemporaryDirectory(prefix="peel-bench-") as tmp:
        bot = BotProcess(bot_config(args, fake, gemini, Path(tmp) / "data"),
                         Path(tmp) / "bot.log")
        try:
            await bot.start()
            await wait_for_bot(fake, bot)
            run = Run(fake, members, timeout=args.latency * 3 + 60)
            await warm_up(run, gemini, args.warmup)
            await bot.ask("mark")
            fake_ticker = LagTicker(args.lag_interval)
            fake_ticking = asyncio.create_task(fake_ticker.run())
            started = time.monotonic()
            machine, fakes = busy_cpu_seconds(), own_cpu_seconds()
            if args.arrival == "burst":
                await run.burst(args.jobs)
            else:
                await run.poisson(args.members * args.jobs, args.rate, random.Random(args.seed))
            wall = time.monotonic() - started
            measured = await bot.ask("stop")
            fakes = own_cpu_seconds() - fakes
            others = busy_cpu_seconds() - machine - fakes - measured["cpu_s"]
            measured.update(fakes_cpu_s=fakes, others_cpu_s=max(others, 0.0),
                            fakes_lag_s=fake_ticker.samples)
            fake_ticking.cancel()
            if len(fake.finished) < len(run.ids) or any(
                fake.finished[i].error for i in run.ids if i in fake.finished
            ):
                sys.stderr.write(_tail(bot.log_path))
        except BaseException:
            sys.stderr.write(_tail(bot.log_path))
            raise
        finally:
            await bot.close()
            sweeper.cancel()
            await gemini.close()
            await fake.close()
    figures, facts = summarise(args, run, measured, len(image), wall)
    print_report(args, figures, facts)
    print_phases(phases(run, gemini.calls))
    if args.trace:
        print_trace(measured["trace_s"])
    if args.slow_callback:
        print_slow_callbacks(measured["slow_callbacks"])
    if args.json:
        text = json.dumps({"args": vars(args), **facts}, indent=2)
        await asyncio.to_thread(Path(args.json).write_text, text)
    return 0 if facts["failed"] == 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=200, help="members sending commands")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per member")
    parser.add_argument("--latency", type=float, default=2.0, help="fake model latency U, s")
    parser.add_argument("--image-mb", type=float, default=1.5, help="result PNG size, MB")
    parser.add_argument("--image-edge", type=int, default=1024, help="result PNG edge, px")
    parser.add_argument("--arrival", choices=("burst", "poisson"), default="burst")
    parser.add_argument("--rate", type=float, default=90.0, help="poisson arrivals per s")
    parser.add_argument("--max-concurrent", type=int, default=200, help="MAX_CONCURRENT_JOBS")
    parser.add_argument("--max-jobs-per-user", type=int, default=0,
                        help="MAX_JOBS_PER_USER (default: jobs per member, 10..100)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up jobs, not measured")
    parser.add_argument("--lag-interval", type=float, default=0.005, help="ticker period, s")
    parser.add_argument("--log-level", default="INFO", help="the bot's LOG_LEVEL")
    parser.add_argument("--trace", action="store_true",
                        help="time the steps of each turn inside the bot (adds overhead)")
    parser.add_argument("--slow-callback", type=float, default=0, metavar="MS",
                        help="list the bot's loop callbacks that ran this long or longer")
    parser.add_argument("--profile", metavar="PATH",
                        help="cProfile the bot's event-loop thread into PATH (pstats format)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args(argv)


def main() -> int:
    return asyncio.run(main_async(parse_args()))


if __name__ == "__main__":
    sys.exit(main())
