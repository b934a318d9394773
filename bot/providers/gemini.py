"""Google's native generateContent API (also spoken by relays such as Anyfast).

Wire details are in specs/providers.md section 1. The choices made here:

- One non-streaming `generateContent` call per turn. Lite has no progressive images, so
  streaming would add framing work and buy nothing (spec 1.6).
- The key travels in the `x-goog-api-key` header, never in `?key=`, so it cannot reach a
  URL in a log line. Error text is also scrubbed of the literal key in case a relay quotes it.
- JSON and base64 never run on the event loop. The request is encoded by msgspec with the
  raw image `bytes` (base64 happens inside the encoder) and the response is decoded into
  typed structs, both on the single codec worker (specs/performance.md sections 1 and 5);
  an image's base64 text is decoded by pybase64 (see `_image_bytes`).
- Relays answer in camelCase or snake_case and with `null` fields; the structs carry both
  spellings of every field we read and treat every field as optional.
- The HTTP exchange alone is retried (429, 5xx, timeouts). Blocks and no-image answers are
  HTTP 200s, parsed after the retry loop, so they are never retried: the same prompt would be
  blocked again and every attempt is billed.
- Failures carry what Google billed (`usageMetadata`) so a member pays only for that.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pybase64

from bot.codec import decode_json, encode_json, run_codec
from bot.errors import (
    ContentBlocked,
    NoImageReturned,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    TooManyImages,
    scrub,
)
from bot.models import (
    IMAGE_OUTPUT_TOKENS,
    MAX_REFERENCE_IMAGES,
    Capabilities,
    ImageData,
    TurnRequest,
    TurnResult,
    Usage,
    sniff_mime,
)
from bot.pricing import estimate_usage
from bot.providers.http import (
    RetryPolicy,
    Timeouts,
    download,
    exchange,
    http_error,
    send,
    with_retries,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_MODEL = "gemini-3.1-flash-lite-image"

# finishReason values that mean "refused on policy grounds": terminal for this prompt.
BLOCK_REASONS = frozenset({
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "PROHIBITED_CONTENT", "SAFETY",
    "BLOCKLIST", "SPII", "RECITATION", "IMAGE_RECITATION",
})
# Anything else without an image (NO_IMAGE, IMAGE_OTHER, MAX_TOKENS, OTHER...) is "no image".
_ANSWERED = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})

# Reference bytes up to which a request is encoded on the event loop (at most ~60 us).
INLINE_ENCODE_BYTES = 32 * 1024
# Answers being read and decoded at once per provider. The codec worker decodes one at a
# time (1-3 ms each), so a few keep it busy while the rest wait in their sockets.
BODIES_AT_ONCE = 4

_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\((https?://[^\s)]+)\)")
_BARE_URL = re.compile(r"^<?(https?://\S+?)>?$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_RETRY_IN_MESSAGE = re.compile(r"retry in (\d+(?:\.\d+)?)s", re.IGNORECASE)
_BAD_KEY_MESSAGES = ("api key not valid", "api key not found")


# --- Response structs: both spellings of each field, everything optional (relays send nulls).


class _Blob(msgspec.Struct):
    # The JSON text of the base64 string, unread: see `_image_bytes`.
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    mime: str | None = msgspec.field(default=None, name="mimeType")
    mime_snake: str | None = msgspec.field(default=None, name="mime_type")


class _Part(msgspec.Struct):
    text: str | None = None
    thought: bool | None = None
    inline: _Blob | None = msgspec.field(default=None, name="inlineData")
    inline_snake: _Blob | None = msgspec.field(default=None, name="inline_data")


class _Content(msgspec.Struct):
    parts: list[_Part] | None = None


class _Candidate(msgspec.Struct):
    content: _Content | None = None
    finish: str | None = msgspec.field(default=None, name="finishReason")
    finish_snake: str | None = msgspec.field(default=None, name="finish_reason")


class _Response(msgspec.Struct):
    candidates: list[_Candidate] | None = None
    feedback: dict[str, Any] | None = msgspec.field(default=None, name="promptFeedback")
    feedback_snake: dict[str, Any] | None = msgspec.field(default=None, name="prompt_feedback")
    usage: dict[str, Any] | None = msgspec.field(default=None, name="usageMetadata")
    usage_snake: dict[str, Any] | None = msgspec.field(default=None, name="usage_metadata")
    error: dict[str, Any] | None = None


_response_decoder = msgspec.json.Decoder(_Response)


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    """The parts of a generateContent answer Peel acts on."""

    images: tuple[ImageData, ...]
    texts: tuple[str, ...]
    finish_reason: str | None
    block_reason: str | None
    has_candidates: bool
    usage_metadata: Mapping[str, Any] | None
    error: Mapping[str, Any] | None = None

    @property
    def text(self) -> str | None:
        return "\n".join(self.texts) or None


def _field(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = mapping.get(camel)
    return mapping.get(snake) if value is None else value


def parse_response(raw: bytes) -> ParsedResponse:
    """Decode a generateContent body: JSON and base64 in one pass. Runs on the codec worker.

    Raises ProviderBadResponse when the body is not a GenerateContentResponse.
    """
    try:
        response = _response_decoder.decode(raw)
    except msgspec.MsgspecError as exc:
        raise ProviderBadResponse(
            f"unreadable generateContent body: {exc}", provider="gemini"
        ) from exc
    first = response.candidates[0] if response.candidates else None
    images: list[ImageData] = []
    texts: list[str] = []
    parts = first.content.parts if first and first.content and first.content.parts else []
    for part in parts:
        if part.thought:
            continue  # thinking output and interim images are not the answer
        blob = part.inline or part.inline_snake
        data = _image_bytes(blob.data) if blob is not None else None
        if blob is not None and data:
            declared = blob.mime or blob.mime_snake
            # The bytes win over the label; the label is the fallback for unknown formats.
            mime = sniff_mime(data) or declared or "application/octet-stream"
            images.append(ImageData(data, mime))
        elif part.text and part.text.strip():
            texts.append(part.text.strip())  # signature-only parts carry "" and are skipped
    feedback = response.feedback or response.feedback_snake or {}
    return ParsedResponse(
        images=tuple(images),
        texts=tuple(texts),
        finish_reason=(first.finish or first.finish_snake) if first else None,
        block_reason=_field(feedback, "blockReason", "block_reason"),
        has_candidates=first is not None,
        usage_metadata=response.usage or response.usage_snake,
        error=response.error,
    )


def _image_bytes(raw: msgspec.Raw) -> bytes | None:
    """An `inlineData.data` value: its JSON text (`"..."`, or `null`) to the image bytes.

    msgspec decoding base64 as it parses took 1.4 ms of held GIL per 1.5 MB image, on the
    codec worker but stalling the event loop all the same; msgspec only delimits the string
    here (`Raw`), and pybase64's SIMD decoder reads it in under 0.1 ms. A string with JSON
    escapes in it (a relay that writes `=` as `\\u003d`) fails that strict decode and is read
    by msgspec instead, which undoes the escapes.
    """
    text = memoryview(raw)
    if len(text) == 0 or text == b"null":
        return None
    if len(text) >= 2 and text[0] == text[-1] == ord('"'):
        try:
            return pybase64.b64decode(text[1:-1], validate=True)
        except ValueError:
            pass  # escapes, or not base64 at all: msgspec tells which
    try:
        return msgspec.json.decode(text, type=bytes)
    except msgspec.MsgspecError as exc:
        raise ProviderBadResponse(
            f"inlineData.data is not base64 text: {exc}", provider="gemini"
        ) from exc


def _count(meta: Mapping[str, Any], camel: str, snake: str) -> int:
    value = _field(meta, camel, snake)
    return value if isinstance(value, int) and value > 0 else 0


def usage_from_metadata(
    meta: Mapping[str, Any] | None, *, images: int, fallback: Usage
) -> Usage:
    """Map `usageMetadata` to Peel's Usage; `fallback` (reported=False) when it is missing.

    - input: prompt tokens plus tool-use prompt tokens;
    - image output: the IMAGE entry of candidatesTokensDetails. The details may not add up
      (a capture has 1392 candidates vs IMAGE 1120), so the remainder is text. Without
      details, images returned are assumed to cost the documented 1120 tokens each;
    - thinking: thoughtsTokenCount, plus any part of totalTokenCount the other counts leave
      unexplained (relays hide thoughts but still bill them in the total).
    """
    if meta is None:
        return fallback
    prompt = _count(meta, "promptTokenCount", "prompt_token_count")
    prompt += _count(meta, "toolUsePromptTokenCount", "tool_use_prompt_token_count")
    details = _field(meta, "candidatesTokensDetails", "candidates_tokens_details") or []
    image_counts = [
        _count(d, "tokenCount", "token_count") for d in details
        if isinstance(d, Mapping) and str(d.get("modality", "")).upper() == "IMAGE"
    ]
    candidates = _count(meta, "candidatesTokenCount", "candidates_token_count")
    if image_counts:
        image = sum(image_counts)
    else:
        image = min(candidates, images * IMAGE_OUTPUT_TOKENS)
    candidates = max(candidates, image)
    thinking = _count(meta, "thoughtsTokenCount", "thoughts_token_count")
    unexplained = _count(meta, "totalTokenCount", "total_token_count") - (
        prompt + candidates + thinking
    )
    return Usage(
        input_tokens=prompt,
        output_image_tokens=image,
        output_text_tokens=candidates - image,
        thinking_tokens=thinking + max(unexplained, 0),
    )


def _error_fields(body: bytes) -> Mapping[str, Any]:
    """The `error` object of a Google error body ({} when absent). Runs on the codec worker."""
    try:
        decoded = decode_json(body)
    except msgspec.MsgspecError:
        return {}
    if isinstance(decoded, list) and len(decoded) == 1:
        decoded = decoded[0]  # the streamed-array form wraps the envelope in a list
    error = decoded.get("error") if isinstance(decoded, dict) else None
    return error if isinstance(error, dict) else {}


def _details(error: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _is_bad_key(error: Mapping[str, Any]) -> bool:
    if any(d.get("reason") == "API_KEY_INVALID" for d in _details(error)):
        return True
    message = str(error.get("message", "")).lower()
    return any(phrase in message for phrase in _BAD_KEY_MESSAGES)


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    """RetryInfo.retryDelay ("34.4s"), else the "Please retry in 7.9s." of the message."""
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    match = _RETRY_IN_MESSAGE.search(str(error.get("message", "")))
    return float(match.group(1)) if match else None


def _link_in(text: str | None) -> str | None:
    """The image URL of a URL-mode relay answer: a Markdown image, or a text that is a URL."""
    if not text:
        return None
    markdown = _MARKDOWN_IMAGE.search(text)
    if markdown:
        return markdown.group(1)
    bare = _BARE_URL.match(text.strip())
    return bare.group(1) if bare else None


class GeminiProvider:
    """gemini-3.1-flash-lite-image over the native API (Google AI Studio or a relay)."""

    name = "gemini"
    capabilities = Capabilities(
        max_reference_images=MAX_REFERENCE_IMAGES,
        max_images_per_request=1,
        reports_usage=True,
        multi_turn=True,
    )

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe to share
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen dataclass, safe to share
        max_result_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        self._session = session
        self._api_key = api_key
        self.model = model.removeprefix("models/")
        self.retry = retry
        self.timeouts = timeouts
        self.max_result_bytes = max_result_bytes
        root = base_url.rstrip("/").removesuffix("/v1beta")
        self._model_url = f"{root}/v1beta/models/{self.model}"
        # Answers read and decoded at once: each is a ~2 MB body until the codec worker
        # has turned it into image bytes (see `exchange`).
        self._bodies = asyncio.Semaphore(BODIES_AT_ONCE)

    # --- the protocol

    async def run_turn(self, request: TurnRequest) -> TurnResult:
        if len(request.images) > self.capabilities.max_reference_images:
            raise TooManyImages(
                f"This model takes at most {self.capabilities.max_reference_images} images."
            )
        body = await self._encode(request)
        log.debug(
            "gemini: generateContent model=%s refs=%d aspect=%s prompt_chars=%d",
            self.model, len(request.images), request.aspect_ratio, len(request.prompt),
        )
        parsed = await with_retries(
            lambda: self._generate(body), self.retry, provider=self.name
        )
        return await self._outcome(parsed, request)

    async def check_credentials(self) -> None:
        """GET the model's metadata: free, and proves both the key and the model id."""
        try:
            status, raw, headers = await send(
                self._session, "GET", self._model_url, provider=self.name,
                timeouts=self.timeouts, headers=self._auth_headers(),
            )
        except ProviderError as exc:
            log.warning("gemini: could not check credentials (%s); going on", exc.detail)
            return
        if status == 200:
            return
        error = await self._http_error(status, raw, headers)
        if isinstance(error, ProviderAuthError) or status == 404:
            raise error
        log.warning("gemini: credential check answered HTTP %d; going on", status)

    # --- HTTP

    def _auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key}

    async def _encode(self, request: TurnRequest) -> bytes:
        """The request body; on the codec worker when it carries images worth the hop.

        A text-only body encodes in microseconds: on the worker it would instead wait
        behind other calls' 2 MB answers (tens of ms when many land at once).
        """
        value = self._request_body(request)
        if sum(len(image.data) for image in request.images) <= INLINE_ENCODE_BYTES:
            return encode_json(value)
        return await run_codec(encode_json, value)

    def _request_body(self, request: TurnRequest) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        parts += [
            {"inlineData": {"mimeType": image.mime, "data": image.data}}  # bytes: b64 in encoder
            for image in request.images
        ]
        image_config: dict[str, str] = {"imageSize": "1K"}  # Lite makes 1K only
        if request.aspect_ratio:
            image_config["aspectRatio"] = request.aspect_ratio
        return {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                "responseModalities": ["TEXT", "IMAGE"],
                "imageConfig": image_config,
            },
        }

    async def _generate(self, body: bytes) -> ParsedResponse:
        """One generateContent exchange, decoded; errors raised as the project's errors."""

        async def answer(status: int, raw: bytes, headers: Mapping[str, str]) -> ParsedResponse:
            if status != 200:
                raise await self._http_error(status, raw, headers)
            parsed = await run_codec(parse_response, raw)
            if parsed.error is not None:
                raise self._error_from(parsed.error, 200, raw, {})  # a relay's error in a 200
            return parsed

        return await exchange(
            self._session, "POST", f"{self._model_url}:generateContent", answer,
            provider=self.name, timeouts=self.timeouts, data=body, gate=self._bodies,
            headers={**self._auth_headers(), "Content-Type": "application/json"},
        )

    async def _http_error(
        self, status: int, raw: bytes, headers: Mapping[str, str]
    ) -> ProviderHTTPError:
        error = await run_codec(_error_fields, raw)
        return self._error_from(error, status, raw, headers)

    def _error_from(
        self, error: Mapping[str, Any], status: int, raw: bytes, headers: Mapping[str, str]
    ) -> ProviderHTTPError:
        code = error.get("code")
        if status == 200 and isinstance(code, int):
            status = code  # a relay's error envelope inside a 200
        text = scrub(raw[:4096].decode("utf-8", "replace"), (self._api_key,))
        if status == 400 and _is_bad_key(error):
            return ProviderAuthError(status, text, provider=self.name, headers=headers)
        retry_after = _retry_delay(error) if status == 429 else None
        return http_error(
            status, text, provider=self.name, headers=headers, retry_after=retry_after
        )

    # --- outcomes

    async def _outcome(self, parsed: ParsedResponse, request: TurnRequest) -> TurnResult:
        billed = self._billed(parsed, request)
        if parsed.images:
            self._check_size(parsed.images)
            return TurnResult(parsed.images, parsed.text, billed)
        reason = parsed.finish_reason
        if parsed.block_reason and not parsed.has_candidates:
            raise ContentBlocked(parsed.block_reason, provider=self.name, usage=billed)
        if reason in BLOCK_REASONS:
            raise ContentBlocked(reason, text=parsed.text, provider=self.name, usage=billed)
        if reason is not None and reason not in _ANSWERED:
            raise NoImageReturned(reason, text=parsed.text, provider=self.name, usage=billed)
        link = _link_in(parsed.text)
        if link:
            return TurnResult((await self._fetch_linked(link),), None, billed)
        if parsed.text:
            raise NoImageReturned("TEXT_ONLY", text=parsed.text, provider=self.name, usage=billed)
        raise NoImageReturned("EMPTY", provider=self.name, usage=billed)

    def _billed(self, parsed: ParsedResponse, request: TurnRequest) -> Usage:
        """Reported usage; without it, the estimate (only its input when no image came back,
        since a refusal bills the prompt at most)."""
        images = len(parsed.images) or (1 if _link_in(parsed.text) else 0)
        estimate = estimate_usage(request.prompt, len(request.images))
        if not images:
            estimate = Usage(input_tokens=estimate.input_tokens, reported=False)
        return usage_from_metadata(parsed.usage_metadata, images=images, fallback=estimate)

    def _check_size(self, images: tuple[ImageData, ...]) -> None:
        for image in images:
            if len(image.data) > self.max_result_bytes:
                raise ProviderBadResponse(
                    f"result image of {len(image.data)} bytes exceeds {self.max_result_bytes}",
                    provider=self.name,
                )

    async def _fetch_linked(self, url: str) -> ImageData:
        """Anyfast's URL mode: the image is a link in the text. Download it, capped."""
        data, declared = await download(
            self._session, url, provider=self.name,
            max_bytes=self.max_result_bytes, timeouts=self.timeouts,
        )
        mime = sniff_mime(data)
        if mime is None:
            raise ProviderBadResponse(
                f"linked result is not an image (Content-Type {declared})", provider=self.name
            )
        return ImageData(data, mime)
