"""HTTP plumbing shared by every provider: timeouts, error mapping, retries, capped downloads.

One retry policy for all four routes (issue 5): 429 and 5xx (and timeouts, connection
resets) are retried with capped exponential backoff and full jitter, honouring the
server's hint (Retry-After, Gemini's RetryInfo); at most three attempts; 4xx, safety
blocks and no-image answers are never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from bot.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderHTTPError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    scrub,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 20.0
    # A server hint longer than this is not waited out: the member is told to come back.
    max_hint: float = 60.0

    def delay(self, attempt: int, hint: float | None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if hint is not None:
            return min(max(hint, 0.0), self.max_hint)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    total: float = 120.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.total, sock_connect=self.connect)


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header: delta seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def http_error(
    status: int,
    body: str,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> ProviderHTTPError:
    """Map a non-2xx status to the project's error type."""
    headers = headers or {}
    if retry_after is None:
        retry_after = parse_retry_after(headers.get("Retry-After"))
    cls: type[ProviderHTTPError] = ProviderHTTPError
    if status in (401, 403):
        cls = ProviderAuthError
    elif status == 429:
        cls = ProviderRateLimited
    elif status == 408 or status >= 500:
        cls = ProviderUnavailable
    return cls(status, body, provider=provider, retry_after=retry_after, headers=headers)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    provider: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call`, retrying errors marked `retryable` per `policy`."""
    attempt = 1
    while True:
        try:
            return await call()
        except ProviderError as exc:
            hint = getattr(exc, "retry_after", None)
            if not exc.retryable or attempt >= policy.max_attempts:
                raise
            if hint is not None and hint > policy.max_hint:
                raise
            wait = policy.delay(attempt, hint)
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.2fs",
                provider, attempt, exc.detail[:200], wait,
            )
            await sleep(wait)
            attempt += 1


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    provider: str,
    timeouts: Timeouts,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    params: Mapping[str, str] | None = None,
) -> tuple[int, bytes, Mapping[str, str]]:
    """One HTTP exchange. Network failures become ProviderTimeout / ProviderUnavailable.

    Returns status, body and headers for any status; the caller maps non-2xx itself
    (error bodies differ per provider).
    """

    async def as_is(status: int, body: bytes, headers: Mapping[str, str]) -> Answer:
        return status, body, headers

    return await exchange(
        session, method, url, as_is, provider=provider, timeouts=timeouts,
        headers=headers, data=data, params=params,
    )


Answer = tuple[int, bytes, Mapping[str, str]]


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    handle: Callable[[int, bytes, Mapping[str, str]], Awaitable[T]],
    *,
    provider: str,
    timeouts: Timeouts,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    params: Mapping[str, str] | None = None,
    gate: asyncio.Semaphore | None = None,
) -> T:
    """One HTTP exchange whose answer `handle` turns into a result while the body is held.

    With a `gate`, the body is read (and handled) only once the gate lets it in, after the
    status line and headers arrived. Many answers landing at once, each a few MB, then wait
    in the socket (aiohttp stops reading a response nobody reads) instead of all sitting
    in memory while the single codec worker decodes them one by one.
    """
    where = f"{method} {scrub(url)}"
    with _network_errors(where, provider):
        response = await session.request(
            method, url, headers=headers, data=data, params=params,
            timeout=timeouts.client_timeout(),
        )
    try:
        async with gate if gate is not None else _NO_GATE:
            with _network_errors(where, provider):
                body = await response.read()
            response.release()  # the connection goes back to the pool before the decode
            return await handle(response.status, body, response.headers)
    finally:
        response.release()


_NO_GATE = contextlib.nullcontext()


@contextlib.contextmanager
def _network_errors(where: str, provider: str) -> Iterator[None]:
    """Timeouts and connection failures as ProviderTimeout / ProviderUnavailable."""
    try:
        yield
    except TimeoutError as exc:
        raise ProviderTimeout(f"{where} timed out", provider=provider) from exc
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(
            0, f"{where} failed: {type(exc).__name__}", provider=provider
        ) from exc


async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    provider: str,
    max_bytes: int,
    timeouts: Timeouts,
) -> tuple[bytes, str | None]:
    """Fetch a result image from a provider URL, stopping at `max_bytes`.

    The declared Content-Length is not trusted; the body is streamed and cut off.
    Returns the bytes and the declared content type.
    """
    with _network_errors(f"download {scrub(url)}", provider):
        async with session.get(url, timeout=timeouts.client_timeout()) as resp:
            if resp.status != 200:
                body = (await resp.content.read(2048)).decode("utf-8", "replace")
                raise http_error(resp.status, body, provider=provider, headers=resp.headers)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise ProviderError(
                        f"result image at {scrub(url)} exceeds {max_bytes} bytes",
                        provider=provider,
                    )
                chunks.append(chunk)
            return b"".join(chunks), resp.headers.get("Content-Type")
