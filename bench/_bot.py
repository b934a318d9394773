"""The bot side of `bench/load.py`: the production bot in a process of its own.

Started by the load driver as `python -m bench._bot '<json config>'`. It builds Peel with the
production `open_runtime`, connects to the driver's fake Discord, and measures itself while
it works: event-loop lag (a ticker coroutine on the bot's loop), CPU time of the process and
of the loop thread, and peak RSS. The driver talks to it over stdin/stdout, one line each:

    mark   -> start measuring now (drops the start-up samples); answers {"marked": true}
    stop   -> answers with the measurements as one JSON line, closes the bot and exits

Diagnostics the config can ask for: `trace` (wall time of each step of a turn),
`slow_callback` (every loop callback that ran that many seconds or more, and the code it
ran) and `profile` (cProfile of the loop thread, written to that path).
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import gc
import importlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bot.app import open_runtime
from bot.logs import configure_logging
from bot.settings import load_settings


class LagTicker:
    """Sleeps `interval` again and again on the loop and records how late each wake-up is."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append(loop.time() - asked - self.interval)


def _status_kb(field: str) -> int:
    """A `VmHWM`/`VmRSS` line of /proc/self/status, in kB (0 where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS, so the peak is the load's, not start-up's."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        pass


class GcWatch:
    """The pauses of Python's cyclic garbage collector (each stops every thread)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.generations: list[int] = []  # the generation each pause collected
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)
            self.generations.append(info["generation"])


class Meter:
    """CPU and memory between `mark()` and `report()`; both run on the loop thread."""

    def __init__(self, ticker: LagTicker) -> None:
        self.ticker = ticker
        self.gc = GcWatch()
        self._wall = self._cpu = self._sys = self._loop_cpu = 0.0
        self._faults = 0

    def mark(self) -> None:
        self.ticker.samples.clear()
        self.gc.pauses.clear()
        self.gc.generations.clear()
        _reset_peak_rss()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._wall = time.perf_counter()
        self._cpu = usage.ru_utime + usage.ru_stime
        self._sys = usage.ru_stime
        self._loop_cpu = time.thread_time()
        self._faults = usage.ru_minflt

    def report(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "wall_s": time.perf_counter() - self._wall,
            "cpu_s": usage.ru_utime + usage.ru_stime - self._cpu,
            "sys_s": usage.ru_stime - self._sys,
            "loop_cpu_s": time.thread_time() - self._loop_cpu,
            "lag_s": self.ticker.samples,
            "gc_pauses_s": self.gc.pauses,
            "gc_generations": self.gc.generations,
            "gc_objects": len(gc.get_objects()),
            "minor_faults": usage.ru_minflt - self._faults,
            "peak_rss_kb": _status_kb("VmHWM"),
            "rss_kb": _status_kb("VmRSS"),
            "maxrss_kb": usage.ru_maxrss,  # since start, including start-up
        }


# Coroutine methods timed by `--trace` (module, class, method): the steps of one turn.
TRACED = (
    ("bot.turns", None, "run_interaction_turn"),
    ("discord.interactions", "InteractionResponse", "defer"),
    ("discord.interactions", "Interaction", "edit_original_response"),
    ("bot.service", "ImageService", "run"),
    ("bot.service", "ImageService", "_settle"),
    ("bot.service", "ImageService", "_deliver"),
    ("bot.service", "ImageService", "record_delivery"),
    ("bot.providers.gemini", "GeminiProvider", "run_turn"),
    ("bot.providers.gemini", "GeminiProvider", "_generate"),
    ("bot.providers.gemini", None, "run_codec"),
    ("bot.storage.blobs", "BlobStore", "put"),
    ("bot.storage.jobs", "JobStore", "create"),
    ("bot.storage.jobs", "JobStore", "set_status"),
    ("bot.storage.ledger", "Ledger", "reserve"),
    ("bot.storage.ledger", "Ledger", "settle"),
    ("bot.storage.ledger", "Ledger", "balance"),
    ("bot.storage.conversations", "ConversationStore", "add_turn"),
    ("bot.delivery", None, "_start_thread"),
)


def _timed(original: Any, samples: list[float]) -> Any:
    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            samples.append(time.perf_counter() - started)

    return timed


def trace(durations: dict[str, list[float]]) -> None:
    """Wrap each TRACED coroutine so every call's wall time lands in `durations`.

    Runs before the bot is built, so the cogs import the wrapped functions. A step the code
    no longer has is listed with no calls rather than failing the run.
    """
    for module_name, class_name, name in TRACED:
        label = f"{class_name or module_name}.{name}"
        samples = durations.setdefault(label, [])
        owner: Any = importlib.import_module(module_name)
        if class_name is not None:
            owner = getattr(owner, class_name, None)
        original = getattr(owner, name, None)
        if original is not None:
            setattr(owner, name, _timed(original, samples))


def _where(callback: Any) -> str:
    """Which code a loop callback ran: for a task step, the innermost await it stopped at."""
    task = getattr(callback, "__self__", None)
    if not isinstance(task, asyncio.Task):
        return getattr(callback, "__qualname__", repr(callback))
    coro: Any = task.get_coro()
    name = getattr(coro, "__qualname__", repr(coro))
    while getattr(coro, "cr_await", None) is not None and hasattr(coro.cr_await, "cr_frame"):
        coro = coro.cr_await
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return f"{name} (ended)"
    return f"{name} -> {frame.f_code.co_qualname} {Path(frame.f_code.co_filename).name}:" \
        f"{frame.f_lineno}"


def watch_slow_callbacks(threshold: float, found: list[tuple[float, str]]) -> None:
    """Record every loop callback that runs `threshold` seconds or more, and what it ran."""
    original = asyncio.events.Handle._run

    def timed_run(handle: asyncio.Handle) -> None:
        started = time.perf_counter()
        original(handle)
        took = time.perf_counter() - started
        if took >= threshold:
            found.append((took, _where(handle._callback)))  # type: ignore[attr-defined]

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign, assignment]


async def _lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve(config: dict[str, Any]) -> None:
    settings = load_settings(_env_file=None, **config["settings"])
    configure_logging(settings.log_level, settings.secrets)
    ticker = LagTicker(config["lag_interval"])
    meter = Meter(ticker)
    durations: dict[str, list[float]] = {}
    if config.get("trace"):
        trace(durations)
    # cProfile sees only the thread it is enabled in: here, the event loop's.
    profiler = cProfile.Profile() if config.get("profile") else None
    slow: list[tuple[float, str]] = []
    if config.get("slow_callback"):
        watch_slow_callbacks(config["slow_callback"], slow)
    async with open_runtime(settings, guild_ready_timeout=0.1) as runtime:
        tick_task = asyncio.create_task(ticker.run())
        bot_task = asyncio.create_task(
            runtime.bot.start(settings.discord_token.get_secret_value())
        )
        commands = await _lines()
        while line := (await commands.readline()).decode().strip():
            if line == "mark":
                if profiler is not None:
                    profiler.enable()
                meter.mark()
                for samples in durations.values():
                    samples.clear()
                slow.clear()
                _answer({"marked": True})
            elif line == "stop":
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(config["profile"])
                _answer({**meter.report(), "trace_s": durations, "slow_callbacks": slow})
                break
        tick_task.cancel()
        await runtime.bot.close()
        bot_task.cancel()
        await asyncio.gather(bot_task, tick_task, return_exceptions=True)


def main() -> None:
    asyncio.run(serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
