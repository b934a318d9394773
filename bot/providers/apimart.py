"""APIMart's asynchronous tasks for gemini-3.1-flash-lite-image (specs/providers.md section 3).

Verified [V]: `POST /v1/images/generations` with `model`, `prompt`, `size` ("auto" or a
ratio such as "16:9"), `resolution` ("1K"), `n` and `image_urls` (data URIs are accepted,
per the Gemini-3-pro page); the legacy submit answer `{"code":200,"data":[{"status":
"submitted","task_id":...}]}`; the opt-in 2026-07-27 answer whose `data` is one object
`{"object":"generation.task"|"generation.result","id","status",...}`, chosen with the
`X-APIMart-Response-Version` header and sent together with an `Idempotency-Key`; `GET
/v1/tasks/{id}?language=en`; statuses pending, processing, completed, failed, cancelled;
`result.images[].url` as a list of strings (newer) or a plain string (older); error bodies
`{"error":{code,message,type}}` and `{"success":false,"message":...}`, even inside an HTTP
200; Retry-After; polling every 2 s for at most 10 min or 120 checks.

Secondary [S]: `cost` on the task (taken as the USD price of the call); the status
synonyms submitted, in_progress, success and succeeded.

Idempotency: a network failure during the submit leaves its outcome unknown, so every
turn sends one `Idempotency-Key` (a fresh uuid per turn, reused by every retry of that
submit). APIMart then replays the first answer instead of starting a second paid task.
`n` is always 1: the service runs a count above one as separate calls anyway.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bot.codec import encode_json
from bot.errors import ProviderBadResponse
from bot.models import TurnRequest
from bot.providers.polling import PollSchedule, TaskSnapshot
from bot.providers.taskapi import (
    TaskApiProvider,
    business_error,
    data_uri,
    message_in,
    snapshot,
    task_capabilities,
    urls_in,
)

log = logging.getLogger(__name__)

NAME = "apimart"
DEFAULT_BASE_URL = "https://api.apimart.ai"
RESPONSE_VERSION = "2026-07-27"


def parse_task(item: Any) -> TaskSnapshot:
    """One task object: a legacy submit item, a 2026-07-27 submit answer or a task query."""
    if not isinstance(item, Mapping):
        raise ProviderBadResponse("task data is not an object", provider=NAME)
    status = item.get("status")
    if status is None:
        # As APIMart's own client reads it: a synchronous result is complete, a task pending.
        status = "completed" if item.get("object") == "generation.result" else "pending"
    result = item.get("result")
    return snapshot(
        item, status, item.get("task_id") or item.get("id"), provider=NAME,
        missing_id="task without an id",
        urls=urls_in(result.get("images")) if isinstance(result, Mapping) else (),
        cost=item.get("cost"),
    )


def parse_submit(doc: Any) -> TaskSnapshot:
    """The submit answer: `data` is a one-item list (legacy) or an object (2026-07-27)."""
    data = doc.get("data") if isinstance(doc, Mapping) else None
    if isinstance(data, list):
        if not data:
            raise ProviderBadResponse("submit answer lists no task", provider=NAME)
        data = data[0]
    return parse_task(data)


class ApimartProvider(TaskApiProvider):
    """gemini-3.1-flash-lite-image through APIMart's task API."""

    name = NAME
    capabilities = task_capabilities(max_reference_images=14)

    default_base_url = DEFAULT_BASE_URL
    default_poll = PollSchedule.apimart

    def _encode_submit(self, request: TurnRequest) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "size": request.aspect_ratio or "auto",
            "resolution": "1K",
            "n": 1,
        }
        if request.images:
            body["image_urls"] = [data_uri(image) for image in request.images]
        return encode_json(body)

    async def _submit(self, body: bytes) -> TaskSnapshot:
        headers = {
            "Idempotency-Key": f"peel-{uuid.uuid4().hex}",
            "X-APIMart-Response-Version": RESPONSE_VERSION,
        }
        doc = await self._call("POST", "/v1/images/generations", body=body, headers=headers)
        return parse_submit(doc)

    async def _query(self, task_id: str) -> TaskSnapshot:
        doc = await self._call(
            "GET", f"/v1/tasks/{quote(task_id, safe='')}", params={"language": "en"}
        )
        return parse_task(doc.get("data") if isinstance(doc, Mapping) else None)

    def _probe(self) -> tuple[str, dict[str, str] | None]:
        # Querying a task that cannot exist is free: 401/403 for a bad key, 404 otherwise.
        return "/v1/tasks/task_peel_credential_check", {"language": "en"}

    def _check_envelope(self, doc: Any) -> None:
        # APIMart's own client treats an `error` object or `success: false` as a failure
        # whatever the HTTP status; a legacy envelope may carry a non-200 `code` instead.
        if not isinstance(doc, Mapping):
            return
        error = doc.get("error")
        failed = isinstance(error, Mapping) or doc.get("success") is False
        code = error.get("code") if isinstance(error, Mapping) else doc.get("code")
        if not failed and (not isinstance(code, int) or code in (0, 200)):
            return
        status = code if isinstance(code, int) and 400 <= code < 600 else 400
        message = self._scrub(message_in(doc) or "request failed")
        raise business_error(status, message, provider=NAME)
