"""GMI Cloud's request queue for gemini-3.1-flash-lite-image (specs/providers.md section 2).

Verified [V]: the base URL; `Authorization: Bearer`; `POST /requests`, `GET /requests/{id}`
and `GET /models`; the submit body `{"model", "payload": {"prompt", "image", "aspect_ratio",
"image_output_format", "contents"}}`; the statuses queued, dispatched, processing, success,
failed and cancelled; and "calling method: sync" for Lite, so the POST normally answers
with the finished request and polling is only a fallback.

Secondary [S], accepted defensively: the request object (`request_id`, `status`,
`outcome.media_urls` as `{url, width, height}` objects or as bare strings); failure text in
`error`, `message`, `error_message` or `detail`; the status synonyms running, succeeded,
completed, finished, done, error, failure and canceled; 401/403 for a bad key.

Inferred [I]: reference images travel as Gemini-style `inlineData` parts (camelCase) of
`payload.contents`, after a text part holding the prompt. GMI documents references only as
URLs in `payload.image`; Peel has no public URLs for a member's images, and a third-party
GMI client sends `contents` with inline data for the Gemini image models. Without
references the plain `prompt` field is sent. The fallback poll schedule is ours.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bot.codec import encode_json
from bot.errors import ProviderBadResponse
from bot.models import TurnRequest
from bot.providers.polling import PollSchedule, TaskSnapshot
from bot.providers.taskapi import (
    TaskApiProvider,
    snapshot,
    task_capabilities,
    urls_in,
)

log = logging.getLogger(__name__)

NAME = "gmi"
DEFAULT_BASE_URL = "https://console.gmicloud.ai/api/v1/ie/requestqueue/apikey"


def parse_request(doc: Any) -> TaskSnapshot:
    """A GMI request object (the POST answer or a GET /requests/{id}) as a TaskSnapshot."""
    if not isinstance(doc, Mapping):
        raise ProviderBadResponse("request answer is not an object", provider=NAME)
    outcome = doc.get("outcome")
    media = outcome.get("media_urls") if isinstance(outcome, Mapping) else None
    return snapshot(
        doc, doc.get("status"), doc.get("request_id") or doc.get("id"), provider=NAME,
        missing_id="request without a request_id", urls=urls_in(media),
    )


class GmiProvider(TaskApiProvider):
    """gemini-3.1-flash-lite-image through GMI Cloud's (normally synchronous) request queue."""

    name = NAME
    capabilities = task_capabilities(max_reference_images=14)

    default_base_url = DEFAULT_BASE_URL
    default_poll = PollSchedule.gmi

    def _encode_submit(self, request: TurnRequest) -> bytes:
        payload: dict[str, Any] = {"image_output_format": "png"}
        if request.images:
            # encode_json writes bytes as base64, here on the codec worker.
            parts: list[dict[str, Any]] = [{"text": request.prompt}]
            parts += [
                {"inlineData": {"mimeType": image.mime, "data": image.data}}
                for image in request.images
            ]
            payload["contents"] = [{"role": "user", "parts": parts}]
        else:
            payload["prompt"] = request.prompt
        if request.aspect_ratio:
            payload["aspect_ratio"] = request.aspect_ratio
        return encode_json({"model": self.model, "payload": payload})

    async def _submit(self, body: bytes) -> TaskSnapshot:
        snapshot = parse_request(await self._call("POST", "/requests", body=body))
        if not snapshot.done:
            log.debug("gmi: request %s is %s; polling", snapshot.task_id, snapshot.status)
        return snapshot

    async def _query(self, task_id: str) -> TaskSnapshot:
        return parse_request(await self._call("GET", f"/requests/{quote(task_id, safe='')}"))

    def _probe(self) -> tuple[str, dict[str, str] | None]:
        return "/models", None
