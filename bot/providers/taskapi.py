"""What the three task-style routes (GMI, APIMart, LinkModel) share.

They all resell gemini-3.1-flash-lite-image behind the same pattern: POST a JSON job with
a bearer key, get a task (or, on GMI, usually the finished job), ask again until it is
done, then download the result images from URLs. None of them reports tokens.

`TaskApiProvider` runs that pattern once; each route supplies four small pieces: how to
encode its submit body, how to submit, how to query, and (optionally) how to read a
business error hidden in an HTTP 200. Everything else is common:

- every call goes through `bot.providers.http.send` (connect and total timeouts) inside
  `with_retries` (429/5xx/timeouts, at most three attempts, Retry-After honoured);
- submit bodies, with their base64 reference images, are built on the codec worker, and
  large answers (GMI echoes the base64 payload) are decoded there too;
- result images are downloaded with a size cap and their type sniffed from the bytes;
- the API key goes only into the Authorization header and is scrubbed from any error text.

Usage is Peel's own estimate (`reported=False`), with `cost_usd` set only where the route
stated a price. A task that ends successfully without images bills the member nothing,
because nothing says whether the route billed it [I].
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import aiohttp

from bot.codec import decode_json, run_codec
from bot.errors import (
    NoImageReturned,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderRateLimited,
    TaskFailed,
    scrub,
)
from bot.models import Capabilities, ImageData, TurnRequest, TurnResult, sniff_mime
from bot.pricing import estimate_usage
from bot.providers.http import RetryPolicy, Timeouts, download, http_error, send, with_retries
from bot.providers.polling import (
    PollSchedule,
    TaskSnapshot,
    TaskState,
    classify_status,
    poll_task,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3.1-flash-lite-image"
DEFAULT_MAX_RESULT_BYTES = 20 * 1024 * 1024
# Answers below this size are decoded on the event loop: a thread hop costs more than them.
_INLINE_DECODE_LIMIT = 16 * 1024
# check_credentials makes one attempt: a slow start-up check helps nobody.
_ONE_ATTEMPT = RetryPolicy(max_attempts=1)
_MESSAGE_KEYS = ("message", "msg", "error_message", "detail", "error_description")


RESULT_TYPES = ("image/png", "image/jpeg", "image/webp")


def task_capabilities(max_reference_images: int) -> Capabilities:
    """What a task route offers: one image per task, no token usage, no replayed history."""
    return Capabilities(
        max_reference_images=max_reference_images,
        max_images_per_request=1,
        reports_usage=False,
        multi_turn=False,
    )


def data_uri(image: ImageData) -> str:
    """A `data:` URI for a reference image (CPU-bound: call it on the codec worker)."""
    return f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"


def message_in(doc: Any) -> str:
    """The human-readable message of an error or failed task, whichever key it hides in."""
    if isinstance(doc, str):
        return doc
    if not isinstance(doc, Mapping):
        return ""
    error = doc.get("error")
    if isinstance(error, Mapping):
        nested = message_in(error)
        if nested:
            return nested
    error = error.strip() if isinstance(error, str) else ""
    texts = (doc.get(key) for key in _MESSAGE_KEYS)
    message = next((text for text in texts if isinstance(text, str) and text.strip()), "")
    # GMI-style bodies pair a short `error` ("Unauthorized") with a longer `message`.
    return f"{error}: {message}" if error and message else error or message


def urls_in(value: Any) -> tuple[str, ...]:
    """Result URLs from any shape the routes use: a string, a list of strings, objects
    with a `url` that is itself a string or a list (APIMart), or a mix."""
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, Mapping):
        return urls_in(value.get("url"))
    if isinstance(value, list):
        return tuple(url for item in value for url in urls_in(item))
    return ()


def task_state(status: Any, *, provider: str) -> TaskState:
    """The TaskState of an upstream status; an unknown or missing one is a bad response."""
    state = classify_status(status) if isinstance(status, str) else None
    if state is None:
        raise ProviderBadResponse(f"unknown task status {status!r}", provider=provider)
    return state


def snapshot(
    doc: Mapping[str, Any], status: Any, task_id: Any, *, provider: str, missing_id: str,
    urls: tuple[str, ...] = (), cost: Any = None,
) -> TaskSnapshot:
    """A TaskSnapshot from a route's task fields: the status must be known, a pending task
    must have an id (else ProviderBadResponse "<status> <missing_id>"), and a task that did
    not succeed carries its message from `doc`."""
    state = task_state(status, provider=provider)
    if state is TaskState.PENDING and not task_id:
        raise ProviderBadResponse(f"{status} {missing_id}", provider=provider)
    return TaskSnapshot(
        task_id=str(task_id or ""),
        state=state,
        status=str(status),
        urls=urls,
        message=message_in(doc) if state is not TaskState.SUCCEEDED else "",
        cost_usd=as_cost(cost),
    )


def business_error(code: int, message: str, *, provider: str) -> ProviderHTTPError:
    """An error reported inside a 2xx answer. Only auth and rate limits keep their meaning:
    anything else (LinkModel's "500 insufficient balance") will not pass on a retry."""
    if code in (401, 403):
        return ProviderAuthError(code, message, provider=provider)
    if code == 429:
        return ProviderRateLimited(code, message, provider=provider)
    return ProviderHTTPError(code, message, provider=provider)


def as_cost(value: Any) -> float | None:
    """A stated price (number or numeric string) in USD; anything else is ignored."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        cost = float(value)
    except ValueError:
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


class TaskApiProvider:
    """Base of the task-style routes; subclasses set the class attributes and hooks."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: The provider's real base URL and its published polling schedule.
    default_base_url: ClassVar[str]
    default_poll: ClassVar[Callable[[], PollSchedule]]

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe to share
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen dataclass, safe to share
        poll: PollSchedule | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self._session = session
        self._api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.model = model
        self.retry = retry
        self.timeouts = timeouts
        self.poll = poll or type(self).default_poll()
        self.max_result_bytes = max_result_bytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # --- the protocol

    async def run_turn(self, request: TurnRequest) -> TurnResult:
        body = await run_codec(self._encode_submit, request)
        log.debug(
            "%s: submit model=%s refs=%d aspect=%s prompt_chars=%d",
            self.name, self.model, len(request.images), request.aspect_ratio,
            len(request.prompt),
        )
        task = await self._submit(body)
        if not task.done:
            first = task
            task = await poll_task(
                lambda: self._query(first.task_id), self.poll,
                provider=self.name, task_id=first.task_id,
            )
            if task.cost_usd is None and first.cost_usd is not None:
                task = dataclasses.replace(task, cost_usd=first.cost_usd)
        return await self._finish(request, task)

    async def check_credentials(self) -> None:
        """One free authenticated GET: a rejected key raises, anything else is let go."""
        path, params = self._probe()
        try:
            await self._call("GET", path, params=params, retry=_ONE_ATTEMPT)
        except ProviderAuthError:
            raise
        except ProviderHTTPError as exc:
            if 400 <= exc.status < 500:
                # e.g. 404 for the made-up task id: the key itself was accepted.
                log.debug("%s: credential probe answered %d; key accepted", self.name, exc.status)
                return
            log.warning("%s: could not check credentials (%s); going on", self.name, exc.detail)
        except ProviderError as exc:
            log.warning("%s: could not check credentials (%s); going on", self.name, exc.detail)

    # --- what each route supplies

    def _encode_submit(self, request: TurnRequest) -> bytes:
        """The submit body as JSON bytes. Runs on the codec worker."""
        raise NotImplementedError

    async def _submit(self, body: bytes) -> TaskSnapshot:
        raise NotImplementedError

    async def _query(self, task_id: str) -> TaskSnapshot:
        raise NotImplementedError

    def _probe(self) -> tuple[str, dict[str, str] | None]:
        """Path and query of a free authenticated GET for check_credentials."""
        raise NotImplementedError

    def _check_envelope(self, doc: Any) -> None:
        """Raise for an error reported inside a 2xx answer. Default: none."""

    # --- HTTP and JSON

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """One JSON exchange with retries; returns the decoded 2xx answer."""
        url = f"{self.base_url}{path}"
        all_headers = self._headers(json_body=body is not None, extra=headers)

        async def attempt() -> Any:
            status, raw, resp_headers = await send(
                self._session, method, url, provider=self.name, timeouts=self.timeouts,
                headers=all_headers, data=body, params=params,
            )
            if not 200 <= status < 300:
                raise await self._http_error(status, raw, resp_headers)
            doc = await self._decode(raw)
            self._check_envelope(doc)
            return doc

        return await with_retries(attempt, retry or self.retry, provider=self.name)

    def _headers(self, *, json_body: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if json_body:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        return headers

    async def _decode(self, raw: bytes) -> Any:
        try:
            if len(raw) < _INLINE_DECODE_LIMIT:
                return decode_json(raw)
            return await run_codec(decode_json, raw)
        except ValueError as exc:
            snippet = raw[:200].decode("utf-8", "replace")
            raise self._bad(f"answer is not JSON: {snippet!r}") from exc

    async def _http_error(
        self, status: int, raw: bytes, headers: Mapping[str, str]
    ) -> ProviderHTTPError:
        text = raw[:2048].decode("utf-8", "replace")
        try:
            message = message_in(decode_json(raw)) if raw else ""
        except ValueError:
            message = ""
        return http_error(
            status, self._scrub(message or text), provider=self.name, headers=headers
        )

    def _scrub(self, text: str) -> str:
        return scrub(text, (self._api_key,))

    def _bad(self, what: str) -> ProviderBadResponse:
        return ProviderBadResponse(self._scrub(what), provider=self.name)

    # --- results

    async def _finish(self, request: TurnRequest, task: TaskSnapshot) -> TurnResult:
        if task.state in (TaskState.FAILED, TaskState.CANCELLED):
            log.info("%s: task %s ended %s", self.name, task.task_id, task.status)
            raise TaskFailed(task.status, self._scrub(task.message), provider=self.name)
        if not task.urls:
            raise NoImageReturned("EMPTY", provider=self.name)
        images = [await self._fetch_image(url) for url in task.urls]
        usage = estimate_usage(request.prompt, len(request.images), 1)
        if task.cost_usd is not None:
            usage = dataclasses.replace(usage, cost_usd=task.cost_usd)
        return TurnResult(images=tuple(images), text=None, usage=usage)

    async def _fetch_image(self, url: str) -> ImageData:
        async def attempt() -> bytes:
            data, _declared = await download(
                self._session, url, provider=self.name, max_bytes=self.max_result_bytes,
                timeouts=self.timeouts,
            )
            return data

        data = await with_retries(attempt, self.retry, provider=self.name)
        mime = sniff_mime(data)
        if mime not in RESULT_TYPES:
            raise self._bad(f"result at {url} is not a PNG, JPEG or WebP image")
        return ImageData(data=data, mime=mime)

