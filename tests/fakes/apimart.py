"""A loopback fake of APIMart's task API (specs/providers.md sections 3 and 6.3).

Routes: `POST /v1/images/generations`, `GET /v1/tasks/{id}` (any `language`), and
`/files/<name>.png`. Submits answer with the legacy envelope
`{"code":200,"data":[{"status":"submitted","task_id":...}]}`; tasks then go through
`pending` and `processing` to `completed` (with `result.images[].url` as a list, an
`expires_at` and a `cost`), `failed` (with `error:{code,message,type}`) or `cancelled`.
Errors are `{"error":{"code","message","type"}}`; a 429 carries `Retry-After: 0`.

An `Idempotency-Key` is honoured as APIMart documents: a second submit with a key that
already created a task replays the first answer (header `idempotency-replayed: true`)
instead of starting another task.

Extra scenarios:
- url_string: `result.images[].url` as a plain string (the older doc example).
- v2: the 2026-07-27 response version, `data: {"object":"generation.task","id","status"}`,
  given only when the client asked for it with `X-APIMart-Response-Version: 2026-07-27`,
  as the real service does; otherwise the legacy envelope (what a server ignoring the
  header would send), so clients must read both.
- error_body: HTTP 400 with `{"success":false,"message":...}`.
- error_in_200: HTTP 200 whose body is `{"error":{"code":402,...}}`.
- lost_response: the task is created, then the connection drops before the answer, so
  the client cannot know; only a retry with the same Idempotency-Key is safe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes.upstream import (
    ASPECT_RATIOS,
    MODEL,
    FakeTask,
    FakeUpstream,
    RouteError,
    decode_data_uri,
)

RESPONSE_VERSION = "2026-07-27"
COST_USD = 0.0125
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                404: "invalid_request_error", 429: "rate_limit_error"}


def references_in(body: Mapping[str, Any]) -> list[bytes]:
    urls = body.get("image_urls") or []
    if not isinstance(urls, list) or len(urls) > 14:
        raise RouteError(400, "image_urls must be a list of at most 14 URLs")
    found: list[bytes] = []
    for url in urls:
        if not isinstance(url, str):
            raise RouteError(400, "image_urls entries must be strings")
        if url.startswith("data:"):
            data = decode_data_uri(url)
            if data is None:
                raise RouteError(400, "image_urls: malformed data URI")
            found.append(data)
        elif not url.startswith(("http://", "https://")):
            raise RouteError(400, f"image_urls: unsupported URL {url[:40]!r}")
    return found


def _validate(body: Mapping[str, Any]) -> None:
    if body.get("model") != MODEL:
        raise RouteError(400, f"model {body.get('model')!r} is not available")
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        raise RouteError(400, "prompt is required")
    size = body.get("size", "auto")
    if size != "auto" and size not in ASPECT_RATIOS:
        raise RouteError(400, f"size {size!r} is not supported")
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 4:
        raise RouteError(400, "n must be between 1 and 4")


class FakeApimart(FakeUpstream):
    progression = ("pending", "processing")

    def __init__(self, *, api_key: str = "test-apimart-key", image: bytes | None = None) -> None:
        super().__init__(api_key=api_key, image=image)
        self._replays: dict[str, dict[str, Any]] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/images/generations", self._submit)
        router.add_get("/v1/tasks/{task_id}", self._task)

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
        error = {"code": status, "message": message, "type": kind}
        return web.json_response({"error": error}, status=status, headers=headers)

    async def _submit(self, request: web.Request) -> web.Response:
        body = await self.read_submit(request)
        key = request.headers.get("Idempotency-Key")
        if key in self._replays:
            return web.json_response(self._replays[key], headers={"idempotency-replayed": "true"})
        scenario = self.next_scenario()
        await self.canned(scenario)
        if scenario == "error_body":
            return web.json_response(
                {"success": False, "message": "image_urls[0] could not be read"}, status=400
            )
        if scenario == "error_in_200":
            error = {"code": 402, "message": "insufficient balance", "type": "billing_error"}
            return web.json_response({"error": error})
        _validate(body)
        references = references_in(body)
        self.require_edit(scenario, references)
        task = self.new_task(f"task_{self.new_id()[:26].upper()}", scenario)
        asked = request.headers.get("X-APIMart-Response-Version")
        v2 = scenario == "v2" and asked == RESPONSE_VERSION
        answer = self._v2_answer(task) if v2 else {
            "code": 200, "data": [{"status": "submitted", "task_id": task.id}],
        }
        if key:
            self._replays[key] = answer
        if scenario == "lost_response" and request.transport is not None:
            request.transport.abort()
            raise web.HTTPInternalServerError()  # never reaches the client
        headers = {"x-apimart-response-version": RESPONSE_VERSION} if v2 else {}
        headers["idempotency-replayed"] = "false"
        return web.json_response(answer, headers=headers)

    def _v2_answer(self, task: FakeTask) -> dict[str, Any]:
        data = {"object": "generation.task", "id": task.id, "status": "pending",
                "created": int(time.time())}
        return {"code": 200, "data": data, "request_id": self.new_id()}

    async def _task(self, request: web.Request) -> web.Response:
        self.check_key(request)
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            raise RouteError(404, "task not found")
        status = self.phase(task)
        data: dict[str, Any] = {
            "id": task.id, "status": status, "progress": 30, "created": int(task.created),
            "estimated_time": 60,
        }
        if status is None:
            data.update(self._outcome(task))
        return web.json_response({"code": 200, "data": data})

    def _outcome(self, task: FakeTask) -> dict[str, Any]:
        if task.scenario == "task_failed":
            error = {"code": 400, "message": "Content policy violation: the request was "
                     "blocked by the safety system", "type": "content_policy_violation"}
            return {"status": "failed", "progress": 0, "error": error}
        if task.scenario == "task_cancelled":
            return {"status": "cancelled", "progress": 0}
        images: list[dict[str, Any]] = []
        if task.scenario != "no_image":
            url = self.result_url(task)
            images = [{"url": url if task.scenario == "url_string" else [url],
                       "expires_at": int(time.time()) + 86_400}]
        return {
            "status": "completed", "progress": 100, "result": {"images": images},
            "completed": int(time.time()), "actual_time": 19, "cost": COST_USD,
        }
