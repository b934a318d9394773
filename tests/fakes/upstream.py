"""A small base for the loopback fakes of the task-style image routes (GMI, APIMart, LinkModel).

Each fake is a real aiohttp server on 127.0.0.1 speaking one route's wire format
(specs/providers.md sections 2-4 and the section 6 checklist). This module holds what they
share: start/close, the request log, the FIFO of scenarios, task bookkeeping, the result
files and the canned failures.

Common API, relied on by other tests:

    fake = FakeX(api_key="...", image=png_bytes)   # both optional
    await fake.start(); ...; await fake.close()
    fake.base_url, fake.api_key, fake.image
    fake.requests     # every request: .method .path .query .headers .json
    fake.submits      # parsed bodies of every submit, answered or not
    fake.push("rate_limited", "success")   # behaviours for the next submits; empty -> success
    fake.latency = 0.5                     # seconds before a task may complete

Shared scenarios: success, edit (success, but the submit must carry reference images),
bad_key, rate_limited (429, Retry-After: 0), unavailable (503), hang (the submit never
answers until the fake closes), task_failed (a content-policy message), task_cancelled,
never_finishes (the task stays processing), no_image (success without any image),
not_image (the result URL serves something that is not an image).

Every request is authenticated against `api_key`: a provider built with another key gets
the route's bad-key answer, which echoes the presented key so that tests can prove the
adapter keeps it out of its errors. Result files are served at `/files/<name>.png` with a
generic content type, as CDNs often do, so clients must sniff the bytes.

A task shows each of the route's intermediate statuses once, one per status query, then
completes as soon as `latency` has passed since the submit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from multidict import CIMultiDict
from PIL import Image

MODEL = "gemini-3.1-flash-lite-image"
ASPECT_RATIOS = frozenset({"1:1", "3:2", "2:3", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
NOT_AN_IMAGE = b"<html><body>Access denied</body></html>"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tiny_png(color: tuple[int, int, int] = (220, 90, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    """A small, real PNG made with Pillow."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def decode_data_uri(uri: str) -> bytes | None:
    """The bytes of a `data:<mime>;base64,<data>` URI, or None if it is not one."""
    head, sep, data = uri.partition(",")
    if not (sep and head.startswith("data:") and head.endswith(";base64")):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    json: Any


@dataclass
class FakeTask:
    id: str
    scenario: str
    created: float
    queries: int = 0


class RouteError(Exception):
    """Raised inside a handler to answer with the route's own error shape."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class FakeUpstream:
    #: URL path under which the route lives, e.g. "/api/v1" (its real base path).
    prefix: ClassVar[str] = ""
    #: Statuses a task shows, one per query, before it may finish.
    progression: ClassVar[tuple[str, ...]] = ("processing",)

    def __init__(self, *, api_key: str, image: bytes | None = None) -> None:
        self.api_key = api_key
        self.image = image if image is not None else tiny_png()
        self.latency = 0.0
        self.requests: list[RecordedRequest] = []
        self.submits: list[dict[str, Any]] = []
        self.tasks: dict[str, FakeTask] = {}
        self._scenarios: deque[str] = deque()
        self._files: dict[str, bytes] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._origin = ""

    # --- lifecycle

    @property
    def base_url(self) -> str:
        return f"{self._origin}{self.prefix}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/files/{name}", self._file)
        self.add_routes(app.router)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._origin = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- what each route supplies

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """An error in the route's own body shape."""
        raise NotImplementedError

    # --- scenarios and tasks

    def push(self, *scenarios: str) -> None:
        self._scenarios.extend(scenarios)

    def next_scenario(self) -> str:
        return self._scenarios.popleft() if self._scenarios else "success"

    def new_task(self, task_id: str, scenario: str) -> FakeTask:
        task = FakeTask(task_id, scenario, asyncio.get_running_loop().time())
        self.tasks[task_id] = task
        return task

    def phase(self, task: FakeTask) -> str | None:
        """The intermediate status to show on this query, or None once the task may finish."""
        task.queries += 1
        if task.scenario == "never_finishes":
            return self.progression[-1]
        if task.queries <= len(self.progression):
            return self.progression[task.queries - 1]
        if asyncio.get_running_loop().time() - task.created < self.latency:
            return self.progression[-1]
        return None

    def result_url(self, task: FakeTask) -> str:
        """Publish the task's result file and return its URL."""
        name = f"{task.id}.png"
        self._files[name] = NOT_AN_IMAGE if task.scenario == "not_image" else self.image
        return f"{self._origin}/files/{name}"

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    # --- shared request handling

    def check_key(self, request: web.Request) -> None:
        presented = request.headers.get("Authorization", "")
        if presented != f"Bearer {self.api_key}":
            key = presented.removeprefix("Bearer ")
            raise RouteError(401, f"Invalid API key provided: {key}")

    async def read_submit(self, request: web.Request) -> dict[str, Any]:
        """Authenticate, parse and record a submit body."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RouteError(400, "request body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise RouteError(400, "request body must be a JSON object")
        self.submits.append(body)
        self.check_key(request)
        return body

    async def canned(self, scenario: str) -> None:
        """Raise the shared transport-level failures; return for anything else."""
        if scenario == "hang":
            await self._closing.wait()
            raise RouteError(503, "shutting down")
        if scenario == "bad_key":
            raise RouteError(401, f"API key revoked: {self.api_key}")
        if scenario == "rate_limited":
            raise RouteError(429, "Rate limit exceeded", {"Retry-After": "0"})
        if scenario == "unavailable":
            raise RouteError(503, "The service is temporarily unavailable")

    async def after_latency(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)

    @staticmethod
    def require_edit(scenario: str, references: Sequence[bytes]) -> None:
        if scenario == "edit" and not references:
            raise RouteError(400, "edit scenario: no reference image arrived")

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = None
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query),
                CIMultiDict(request.headers), parsed,
            )
        )
        try:
            return await handler(request)
        except RouteError as exc:
            return self.error_response(exc.status, exc.message, exc.headers)

    async def _file(self, request: web.Request) -> web.Response:
        data = self._files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream")
