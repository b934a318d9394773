"""LinkModel's asynchronous tasks for gemini-3.1-flash-lite-image (specs/providers.md section 4).

Verified [V] (docs.linkmodel.ai and LinkModel's own CLI): base URL `.../api/v1`; bearer
auth; `POST /image-generation` with `model`, `prompt`, `images` (1-10), `quality` ("1K")
and `size` ("16x9": an x, not a colon); the create answer `{"code":0,"data":{"task_id",
"order_id","status":"processing","price"},"msg":"success"}`; `GET /query/image-generation
?task_id=...` answering with `message` instead of `msg`; capitalised statuses Pending,
Processing, Success, Failed, Cancelled; results in `output_images`; a failed task's text in
`data.msg`; HTTP 200 with a non-zero `code` is an error (401 inside means a bad key, and a
500 like "insufficient balance" will not pass on a retry); a missing `code` is invalid; the
published poll schedule.

Inferred [I]:
- Reference images are sent as `data:` URIs in `images`. The docs show only public URLs and
  the CLI validates them as URLs (a data URI parses as a URL); Peel has no public URL for a
  member's upload, and the other routes reselling this model accept data URIs.
- `file_url` (used by video tasks) is read when `output_images` is empty.
- `price` is taken as the USD cost of the call.
- The CLI does not retry 429; Peel's shared policy does, honouring Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

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

NAME = "linkmodel"
DEFAULT_BASE_URL = "https://api.linkmodel.ai/api/v1"


def parse_task(doc: Any) -> TaskSnapshot:
    """The `data` of a create or query answer whose envelope has already been checked."""
    data = doc.get("data") if isinstance(doc, Mapping) else None
    if not isinstance(data, Mapping):
        raise ProviderBadResponse("answer has no data object", provider=NAME)
    return snapshot(
        data, data.get("status"), data.get("task_id"), provider=NAME,
        missing_id="task without a task_id",
        urls=urls_in(data.get("output_images")) or urls_in(data.get("file_url")),
        cost=data.get("price"),
    )


class LinkmodelProvider(TaskApiProvider):
    """gemini-3.1-flash-lite-image through LinkModel's task API."""

    name = NAME
    capabilities = task_capabilities(max_reference_images=10)

    default_base_url = DEFAULT_BASE_URL
    default_poll = PollSchedule.linkmodel

    def _encode_submit(self, request: TurnRequest) -> bytes:
        body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "quality": "1K"}
        if request.aspect_ratio:
            body["size"] = request.aspect_ratio.replace(":", "x")
        if request.images:
            body["images"] = [data_uri(image) for image in request.images]
        return encode_json(body)

    async def _submit(self, body: bytes) -> TaskSnapshot:
        return parse_task(await self._call("POST", "/image-generation", body=body))

    async def _query(self, task_id: str) -> TaskSnapshot:
        doc = await self._call("GET", "/query/image-generation", params={"task_id": task_id})
        return parse_task(doc)

    def _probe(self) -> tuple[str, dict[str, str] | None]:
        # Querying a task that cannot exist is free; a rejected key answers code 401.
        return "/query/image-generation", {"task_id": "peel-credential-check"}

    def _check_envelope(self, doc: Any) -> None:
        code = doc.get("code") if isinstance(doc, Mapping) else None
        if not isinstance(code, int) or isinstance(code, bool):
            raise self._bad(f"answer has no numeric code: {str(doc)[:200]}")
        if code != 0:
            message = self._scrub(message_in(doc) or f"code {code}")
            raise business_error(code, message, provider=NAME)
