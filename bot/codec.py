"""Off-loop JSON and base64 work.

base64 and JSON hold the GIL, so handing them to the default thread pool does not stop
event-loop stalls (specs/performance.md section 5: 31-107 ms max lag). One dedicated worker
bounds each stall to a single call (about 1-3 ms per 1.5 MB image with msgspec).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import msgspec

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peel-codec")
    return _executor


async def run_codec(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run GIL-bound codec work on the single codec worker."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_get_executor(), functools.partial(func, *args, **kwargs))


def encode_json(value: Any) -> bytes:
    """JSON-encode; `bytes` values become base64 strings inside the encoder (no extra copy)."""
    return _json_encoder.encode(value)


def decode_json(raw: bytes | str) -> Any:
    return _json_decoder.decode(raw)


def shutdown() -> None:
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=False, cancel_futures=True)
        _executor = None
