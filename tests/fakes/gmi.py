"""A loopback fake of GMI Cloud's request queue (specs/providers.md sections 2 and 6.2).

Routes under the real base path `/api/v1/ie/requestqueue/apikey`:
`POST /requests`, `GET /requests/{id}`, `GET /models`, plus `/files/<name>.png`.

By default the POST answers synchronously with the finished request (status `success`,
`outcome.media_urls` as `{url, width, height}` objects, the submitted payload echoed back),
as GMI documents for Lite ("calling method: sync"), after `latency` seconds.

Scenarios (see tests/fakes/upstream.py for the shared ones):
- queued: the POST answers `queued`; status queries then show `dispatched`, `processing`
  and finally `success`. task_failed, task_cancelled and never_finishes take this path too.
- sync_failed: the POST itself answers `failed` with an `error` message.
- string_urls: `media_urls` as bare strings, as one third-party fake does.
Errors use `{"error": ..., "message": ...}` with a non-2xx status [I].
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes.upstream import ASPECT_RATIOS, MODEL, FakeTask, FakeUpstream, RouteError

_QUEUED = frozenset({"queued", "task_failed", "task_cancelled", "never_finishes"})
_POLICY = "Request blocked: the prompt violates the content policy (safety filter)."


def references_in(payload: Mapping[str, Any]) -> list[bytes]:
    """Decode the inlineData parts of `payload.contents` (camelCase or snake_case)."""
    found: list[bytes] = []
    contents = payload.get("contents") or []
    if not isinstance(contents, list):
        raise RouteError(400, "payload.contents must be a list")
    for turn in contents:
        for part in turn.get("parts", []) if isinstance(turn, dict) else []:
            if not isinstance(part, dict):
                raise RouteError(400, "parts must be objects")
            blob = part.get("inlineData") or part.get("inline_data")
            if blob is None:
                continue
            try:
                found.append(base64.b64decode(blob["data"], validate=True))
            except (KeyError, TypeError, binascii.Error, ValueError) as exc:
                raise RouteError(400, "inlineData.data is not valid base64") from exc
    return found


def _validate(body: Mapping[str, Any]) -> Mapping[str, Any]:
    if body.get("model") != MODEL:
        raise RouteError(404, f"model {body.get('model')!r} not found")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise RouteError(400, "payload is required")
    if not payload.get("prompt") and not payload.get("contents"):
        raise RouteError(400, "payload.prompt is required unless contents is given")
    ratio = payload.get("aspect_ratio")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        raise RouteError(400, f"aspect_ratio {ratio!r} is not supported")
    if payload.get("image_output_format", "png") not in ("png", "jpeg"):
        raise RouteError(400, "image_output_format must be png or jpeg")
    return payload


class FakeGmi(FakeUpstream):
    prefix = "/api/v1/ie/requestqueue/apikey"
    progression = ("dispatched", "processing")

    def __init__(self, *, api_key: str = "test-gmi-key", image: bytes | None = None) -> None:
        super().__init__(api_key=api_key, image=image)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{self.prefix}/requests", self._submit)
        router.add_get(f"{self.prefix}/requests/{{request_id}}", self._status)
        router.add_get(f"{self.prefix}/models", self._models)

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        reason = web.Response(status=status).reason
        return web.json_response(
            {"error": reason, "message": message}, status=status, headers=headers
        )

    async def _submit(self, request: web.Request) -> web.Response:
        body = await self.read_submit(request)
        scenario = self.next_scenario()
        await self.canned(scenario)
        payload = _validate(body)
        references = references_in(payload)
        if len(references) > 14:
            raise RouteError(400, "at most 14 images are accepted")
        self.require_edit(scenario, references)
        task = self.new_task(self.new_id(), scenario)
        task_payload = dict(payload)
        if scenario in _QUEUED:
            return web.json_response(self._object(task, "queued", task_payload))
        await self.after_latency()
        return web.json_response(self._finished(task, task_payload))

    async def _status(self, request: web.Request) -> web.Response:
        self.check_key(request)
        task = self.tasks.get(request.match_info["request_id"])
        if task is None:
            raise RouteError(404, "request not found")
        status = self.phase(task)
        if status is not None:
            return web.json_response(self._object(task, status, {}))
        return web.json_response(self._finished(task, {}))

    async def _models(self, request: web.Request) -> web.Response:
        self.check_key(request)
        return web.json_response({"model_ids": [MODEL, "gemini-3.1-flash-image-preview"]})

    def _object(self, task: FakeTask, status: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "request_id": task.id,
            "status": status,
            "model": MODEL,
            "payload": payload,
            "created_at": task.created,
            "updated_at": f"{time.time():.3f}",
        }

    def _finished(self, task: FakeTask, payload: dict[str, Any]) -> dict[str, Any]:
        if task.scenario in ("task_failed", "sync_failed"):
            return {**self._object(task, "failed", payload), "error": _POLICY}
        if task.scenario == "task_cancelled":
            return {**self._object(task, "cancelled", payload), "detail": "cancelled by operator"}
        media: list[Any] = []
        if task.scenario != "no_image":
            url = self.result_url(task)
            media = [url if task.scenario == "string_urls" else
                     {"url": url, "width": 1024, "height": 1024}]
        return {**self._object(task, "success", payload), "outcome": {"media_urls": media}}
