"""A loopback stand-in for Google's generateContent API (specs/providers.md section 1, 6.1).

It validates requests the way Google does (key, unknown fields, candidateCount, aspect
ratio, thinking level, optional thought signatures) and answers with shapes copied from
live captures. Behaviour per call is scripted with `push()`:

    fake = FakeGemini()
    await fake.start()
    fake.push("rate_limited", "success")   # first call 429, second call an image
    ...
    await fake.close()

Scenarios (a queue, FIFO; "success" when empty):

    200 with an image   success, caption, thoughts, snake_case, no_usage, url_mode
    200 without one     text_only, no_image, image_safety, image_safety_text,
                        image_prohibited, prohibited_content, safety, recitation,
                        image_other, max_tokens, prompt_blocked, empty_candidates,
                        empty_object
    HTTP errors         bad_key (400), no_key (403), model_not_found (404),
                        rate_limited (429), internal (500), unavailable (503),
                        bad_request (400)
    other               hang (no answer until close())
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

LITE_MODEL = "gemini-3.1-flash-lite-image"
IMAGE_TOKENS = 1120

# The 14-value set Google returned in a live 400 (spec section 1.7). Lite's own set is unknown.
ASPECT_RATIOS = (
    "1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5", "5:4", "8:1", "9:16",
    "16:9", "21:9",
)
THINKING_LEVELS = ("MINIMAL", "HIGH")
INPUT_MIMES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")

CAPTION = "Here is your image: a soft gradient, as requested."
REFUSAL = "I can't create images of that. Could you describe something else?"

# Known message fields (camelCase) -> the message type of their value, or None for scalars
# and free-form values. Google accepts each name in camelCase or snake_case.
_SCHEMA: dict[str, dict[str, str | None]] = {
    "request": {
        "contents": "content", "systemInstruction": "content", "safetySettings": "safety",
        "generationConfig": "generation", "tools": None, "toolConfig": None,
        "cachedContent": None, "labels": None,
    },
    "content": {"role": None, "parts": "part"},
    "part": {
        "text": None, "inlineData": "blob", "fileData": "file", "functionCall": None,
        "functionResponse": None, "thought": None, "thoughtSignature": None,
        "mediaResolution": None, "executableCode": None, "codeExecutionResult": None,
        "videoMetadata": None,
    },
    "blob": {"mimeType": None, "data": None},
    "file": {"mimeType": None, "fileUri": None},
    "safety": {"category": None, "threshold": None},
    "generation": {
        "responseModalities": None, "imageConfig": "image", "thinkingConfig": "thinking",
        "candidateCount": None, "temperature": None, "topP": None, "topK": None,
        "seed": None, "maxOutputTokens": None, "mediaResolution": None,
        "stopSequences": None, "responseMimeType": None, "responseSchema": None,
        "responseJsonSchema": None, "presencePenalty": None, "frequencyPenalty": None,
        "responseLogprobs": None, "logprobs": None, "speechConfig": None,
    },
    "image": {"aspectRatio": None, "imageSize": None},
    "thinking": {"thinkingLevel": None, "includeThoughts": None, "thinkingBudget": None},
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _get(mapping: Any, camel: str) -> Any:
    """A field by either spelling, as Google's parser accepts both."""
    if not isinstance(mapping, dict):
        return None
    value = mapping.get(camel)
    return mapping.get(_snake(camel)) if value is None else value


def make_png(width: int = 64, height: int = 48) -> bytes:
    """A small real PNG: a colour gradient."""
    image = Image.new("RGB", (width, height))
    image.putdata([
        (x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128)
        for y in range(height) for x in range(width)
    ])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class _Reject(Exception):
    """A Google error answer raised from inside validation."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def error_body(
    code: int, status: str, message: str, details: list[Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def _invalid(message: str, details: list[Any] | None = None) -> _Reject:
    return _Reject(400, error_body(400, "INVALID_ARGUMENT", message, details))


@dataclass
class GeminiRequest:
    """One generateContent call as the fake received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    model: str
    prompt: str | None = None
    aspect_ratio: str | None = None
    images: list[tuple[str, bytes]] = field(default_factory=list)


class FakeGemini:
    """Loopback generateContent server. See the module docstring for scenarios."""

    def __init__(
        self,
        *,
        api_key: str = "test-gemini-key",
        image: bytes | None = None,
        image_mime: str = "image/png",
    ) -> None:
        self.api_key = api_key
        self.image = image if image is not None else make_png()
        self.image_mime = image_mime
        self.requests: list[GeminiRequest] = []
        self.latency = 0.0
        self.strict_signatures = False
        self.models: set[str] = {LITE_MODEL}
        self.thoughts_tokens = 0  # thoughtsTokenCount added to successful answers
        # A relay that quotes the caller's key back in its error messages (leak tests).
        self.echo_key = False
        self.base_url = ""
        self._queue: deque[str] = deque()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._b64_cache: tuple[bytes, str] | None = None

    # --- lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_post("/v1beta/models/{target}", self._generate)
        app.router.add_get("/v1beta/models/{model}", self._get_model)
        app.router.add_get("/files/{name}", self._file)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGemini:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def push(self, *scenarios: str) -> None:
        unknown = [s for s in scenarios if s not in _SCENARIOS]
        if unknown:
            raise ValueError(f"unknown FakeGemini scenario(s): {unknown}")
        self._queue.extend(scenarios)

    # --- handlers

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(self._record(request, model, body))
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            self._authenticate(request)
            if method != "generateContent":
                raise self._not_found(model, method or "generateContent")
            scenario = self._queue.popleft() if self._queue else "success"
            if scenario == "hang":
                await self._closing.wait()
                raise _Reject(503, error_body(503, "UNAVAILABLE", "Server is shutting down."))
            if scenario in _ERRORS:
                raise self._scripted_error(scenario, model)
            if model not in self.models:
                raise self._not_found(model, "generateContent")
            self._validate(body)
            return _json(200, self._answer(scenario, body, model))
        except _Reject as reject:
            return self._refuse(reject, request)

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        try:
            self._authenticate(request)
            if model not in self.models:
                raise _Reject(404, error_body(
                    404, "NOT_FOUND", f"models/{model} is not found for API version v1beta."
                ))
        except _Reject as reject:
            return self._refuse(reject, request)
        return _json(200, {
            "name": f"models/{model}", "version": "001", "displayName": "Nano Banana 2 Lite",
            "inputTokenLimit": 65536, "outputTokenLimit": 4096,
            "supportedGenerationMethods": [
                "generateContent", "countTokens", "batchGenerateContent",
            ],
        })

    def _refuse(self, reject: _Reject, request: web.Request) -> web.Response:
        body = reject.body
        sent = request.headers.get("x-goog-api-key") or request.query.get("key")
        if self.echo_key and sent:
            error = dict(body["error"])
            error["message"] = f"{error['message']} [caller key {sent}]"
            body = {"error": error}
        return _json(reject.status, body)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        """Result images of URL mode (Anyfast's "Aggregate-NanoUrl" token group)."""
        return web.Response(body=self.image, content_type=self.image_mime)

    # --- request side

    def _record(self, request: web.Request, model: str, body: Any) -> GeminiRequest:
        contents = _get(body, "contents")
        turn = contents[-1] if isinstance(contents, list) and contents else {}
        parts = _get(turn, "parts")
        parts = parts if isinstance(parts, list) else []
        texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
        images = []
        for part in parts:
            blob = _get(part, "inlineData")
            if isinstance(blob, dict):
                try:
                    data = base64.b64decode(str(_get(blob, "data")), validate=True)
                except binascii.Error:
                    data = b""
                images.append((str(_get(blob, "mimeType")), data))
        ratio = _get(_get(_get(body, "generationConfig"), "imageConfig"), "aspectRatio")
        return GeminiRequest(
            path=request.path, query=dict(request.query), headers=dict(request.headers),
            json=body, model=model, prompt=texts[0] if texts else None,
            aspect_ratio=ratio, images=images,
        )

    def _authenticate(self, request: web.Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            raise _Reject(403, error_body(403, "PERMISSION_DENIED", _NO_KEY_MESSAGE))
        if key != self.api_key:
            raise self._bad_key()

    def _bad_key(self) -> _Reject:
        message = "API key not valid. Please pass a valid API key."
        return _invalid(message, [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."},
        ])

    def _not_found(self, model: str, method: str) -> _Reject:
        return _Reject(404, error_body(404, "NOT_FOUND", (
            f"models/{model} is not found for API version v1beta, or is not supported for "
            f"{method}. Call ListModels to see the list of available models and their "
            "supported methods."
        )))

    def _validate(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received. Unexpected token.")
        _check_fields(body, "request", [])
        contents = _get(body, "contents")
        if not isinstance(contents, list) or not contents:
            raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
        for index, content in enumerate(contents):
            self._validate_content(content, index)
        self._validate_generation(_get(body, "generationConfig") or {})

    def _validate_content(self, content: Any, index: int) -> None:
        parts = _get(content, "parts") or []
        for number, part in enumerate(parts):
            blob = _get(part, "inlineData")
            if blob is None:
                continue
            where = f"contents[{index}].parts[{number}].inline_data"
            try:
                base64.b64decode(str(_get(blob, "data")), validate=True)
            except binascii.Error as exc:
                raise _invalid(
                    f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed"
                ) from exc
            if _get(content, "role") != "model" and _get(blob, "mimeType") not in INPUT_MIMES:
                raise _invalid("Provided image is not valid")
            if (self.strict_signatures and _get(content, "role") == "model"
                    and not _get(part, "thoughtSignature")):
                raise _invalid(
                    "Image part is missing a thought_signature in content position "
                    f"{index + 1}, part position {number + 1}."
                )

    def _validate_generation(self, config: dict[str, Any]) -> None:
        count = _get(config, "candidateCount")
        if isinstance(count, int) and count > 1:
            raise _invalid("Multiple candidates is not enabled for this model")
        for modality in _get(config, "responseModalities") or []:
            if str(modality).upper() not in ("TEXT", "IMAGE", "AUDIO", "VIDEO"):
                raise _invalid(
                    "Invalid value at 'generation_config.response_modalities[0]' "
                    "(type.googleapis.com/google.ai.generativelanguage.v1beta.Modality), "
                    f'"{modality}"'
                )
        ratio = _get(_get(config, "imageConfig"), "aspectRatio")
        if ratio is not None and ratio not in ASPECT_RATIOS:
            allowed = ", ".join(f"'{r}'" for r in ASPECT_RATIOS[:-1])
            raise _invalid(
                "* GenerateContentRequest.generation_config.image_config.aspect_ratio: "
                f"aspect_ratio must be one of {allowed}, or '{ASPECT_RATIOS[-1]}'.\n"
            )
        thinking = _get(config, "thinkingConfig") or {}
        level = _get(thinking, "thinkingLevel")
        if level is not None and _get(thinking, "thinkingBudget") is not None:
            raise _invalid("You can only set only one of thinking budget and thinking level.")
        if level is not None and str(level).upper() not in THINKING_LEVELS:
            raise _invalid(
                f"Thinking level {str(level).upper()} is not supported for this model. "
                "Please retry with other thinking level."
            )

    # --- response side

    def _scripted_error(self, scenario: str, model: str) -> _Reject:
        if scenario == "bad_key":
            return self._bad_key()
        if scenario == "model_not_found":
            return self._not_found(model, "generateContent")
        status, body = _ERRORS[scenario]
        return _Reject(status, body)

    def _image_b64(self) -> str:
        if self._b64_cache is None or self._b64_cache[0] is not self.image:
            self._b64_cache = (self.image, base64.b64encode(self.image).decode("ascii"))
        return self._b64_cache[1]

    def _image_part(self, snake: bool = False) -> dict[str, Any]:
        if snake:
            blob = {"inline_data": {"mime_type": self.image_mime, "data": self._image_b64()}}
        else:
            blob = {"inlineData": {"mimeType": self.image_mime, "data": self._image_b64()}}
        return {**blob, "thoughtSignature": base64.b64encode(secrets.token_bytes(48)).decode()}

    def _answer(self, scenario: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        prompt_tokens = _prompt_tokens(body)
        build = _ANSWERS[scenario]
        answer = build(self, prompt_tokens)
        if "usageMetadata" in answer or scenario in _WITH_ENVELOPE:
            answer["modelVersion"] = model
            answer["responseId"] = secrets.token_urlsafe(16)
        return answer

    def _success(
        self, prompt: dict[str, int], parts: list[dict[str, Any]], text_tokens: int = 0
    ) -> dict[str, Any]:
        return {
            "candidates": [{
                "content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0,
            }],
            "usageMetadata": _usage(prompt, IMAGE_TOKENS + text_tokens, self.thoughts_tokens,
                                    image=IMAGE_TOKENS),
        }


_NO_KEY_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)

_RATE_LIMIT_DETAILS = [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": LITE_MODEL},
        "quotaValue": "10",
    }]},
    {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
        "description": "Learn more about Gemini API quotas",
        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
    }]},
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"},
]

_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "bad_key": (400, {}),  # built per call by FakeGemini._bad_key
    "model_not_found": (404, {}),  # built per call by FakeGemini._not_found
    "no_key": (403, error_body(403, "PERMISSION_DENIED", _NO_KEY_MESSAGE)),
    "rate_limited": (429, error_body(429, "RESOURCE_EXHAUSTED", (
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, head to: https://ai.google.dev/gemini-api/docs/"
        "rate-limits."
    ), _RATE_LIMIT_DETAILS)),
    "unavailable": (503, error_body(
        503, "UNAVAILABLE", "The model is overloaded. Please try again later."
    )),
    "internal": (500, error_body(500, "INTERNAL", (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    ))),
    "bad_request": (400, error_body(
        400, "INVALID_ARGUMENT", "Request contains an invalid argument."
    )),
}


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _prompt_tokens(body: dict[str, Any]) -> dict[str, int]:
    """Prompt tokens by modality: about 4 characters a token, 1120 per input image."""
    counts = {"TEXT": 0, "IMAGE": 0}
    for content in _get(body, "contents") or []:
        for part in _get(content, "parts") or []:
            if isinstance(_get(part, "text"), str):
                counts["TEXT"] += _tokens(part["text"])
            elif _get(part, "inlineData") is not None:
                counts["IMAGE"] += IMAGE_TOKENS
    return counts


def _usage(
    prompt: dict[str, int], candidates: int = 0, thoughts: int = 0, *, image: int = 0
) -> dict[str, Any]:
    """usageMetadata shaped like the captures; details list only IMAGE, as Google's did."""
    prompt_total = sum(prompt.values())
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_total,
        "totalTokenCount": prompt_total + candidates + thoughts,
        "promptTokensDetails": [
            {"modality": modality, "tokenCount": count}
            for modality, count in prompt.items() if count
        ],
        "serviceTier": "standard",
    }
    if candidates:
        usage["candidatesTokenCount"] = candidates
    if image:
        usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": image}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


_Builder = Callable[["FakeGemini", dict[str, int]], dict[str, Any]]


def _finished(reason: str, parts: list[dict[str, Any]] | None = None) -> _Builder:
    """Answer builder: one candidate with `reason`, billed for the prompt (and any text)."""

    def build(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
        candidate: dict[str, Any] = {"finishReason": reason, "index": 0}
        text_tokens = 0
        if parts is not None:
            candidate["content"] = {"parts": parts, "role": "model"}
            text_tokens = sum(_tokens(p.get("text", "")) for p in parts)
        if reason == "SAFETY":
            candidate["safetyRatings"] = [{
                "category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "HIGH",
                "blocked": True,
            }]
        return {"candidates": [candidate], "usageMetadata": _usage(prompt, text_tokens)}

    return build


def _success(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    return fake._success(prompt, [fake._image_part()])


def _caption(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    return fake._success(prompt, [{"text": CAPTION}, fake._image_part()], _tokens(CAPTION))


def _thoughts(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    """Anyfast style: thought text and an interim image first, a signature-only part last."""
    parts = [
        {"text": "**Planning the gradient**\nI will blend two colours.", "thought": True},
        {**fake._image_part(), "thought": True},
        {"text": CAPTION},
        fake._image_part(),
        {"text": "", "thoughtSignature": base64.b64encode(b"signature").decode()},
    ]
    answer = fake._success(prompt, parts, _tokens(CAPTION))
    answer["usageMetadata"] = _usage(
        prompt, IMAGE_TOKENS + _tokens(CAPTION), 180, image=IMAGE_TOKENS
    )
    answer["usageMetadata"].update(trafficType="ON_DEMAND")
    answer["createTime"] = "2026-07-01T12:00:00.000000Z"
    return answer


def _snake_case(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    """A new-api style relay: snake_case blobs and explicit nulls."""
    answer = fake._success(prompt, [{"text": CAPTION}, fake._image_part(snake=True)])
    answer["candidates"][0]["safetyRatings"] = None
    answer["candidates"][0]["citationMetadata"] = None
    answer["promptFeedback"] = {"safetyRatings": None}
    return answer


def _no_usage(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    answer = fake._success(prompt, [fake._image_part()])
    del answer["usageMetadata"]
    return answer


def _url_mode(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    link = f"{fake.base_url}/files/{secrets.token_hex(8)}.png"
    return fake._success(prompt, [{"text": f"![image]({link})"}], _tokens(link))


def _text_only(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": [{"text": REFUSAL}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": _usage(prompt, _tokens(REFUSAL)),
    }


def _max_tokens(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": []}, "finishReason": "MAX_TOKENS", "index": 0}],
        "usageMetadata": _usage(prompt, 0, 4096),
    }


def _no_image(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    # The live capture: empty content, prompt-only usage.
    return {"candidates": [{"content": {}, "finishReason": "NO_IMAGE", "index": 0}],
            "usageMetadata": _usage(prompt)}


def _prompt_blocked(fake: FakeGemini, prompt: dict[str, int]) -> dict[str, Any]:
    return {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": _usage(prompt)}


_ANSWERS: dict[str, _Builder] = {
    "success": _success,
    "caption": _caption,
    "thoughts": _thoughts,
    "snake_case": _snake_case,
    "no_usage": _no_usage,
    "url_mode": _url_mode,
    "text_only": _text_only,
    "no_image": _no_image,
    "image_safety": _finished("IMAGE_SAFETY"),
    "image_safety_text": _finished("IMAGE_SAFETY", [{"text": "I can't create that."}]),
    "image_prohibited": _finished("IMAGE_PROHIBITED_CONTENT"),
    "prohibited_content": _finished("PROHIBITED_CONTENT"),
    "safety": _finished("SAFETY"),
    "recitation": _finished("RECITATION"),
    "image_other": _finished("IMAGE_OTHER"),
    "max_tokens": _max_tokens,
    "prompt_blocked": _prompt_blocked,
    "empty_candidates": lambda fake, prompt: {"candidates": []},
    "empty_object": lambda fake, prompt: {},
}
# Bare third-party shapes get no modelVersion/responseId; these do even without usage.
_WITH_ENVELOPE = frozenset({"no_usage"})
_SCENARIOS = frozenset(_ANSWERS) | frozenset(_ERRORS) | {"hang"}


def _check_fields(value: Any, kind: str, path: list[str]) -> None:
    """Reject unknown field names the way Google's JSON parser does."""
    schema = _SCHEMA[kind]
    if not isinstance(value, dict):
        return
    for name, child in value.items():
        camel = _camel(name)
        if camel not in schema:
            where = f" at '{'.'.join(path)}'" if path else ""
            message = (
                f'Invalid JSON payload received. Unknown name "{name}"{where}: '
                "Cannot find field."
            )
            violation: dict[str, str] = {"description": message}
            if path:
                violation["field"] = ".".join(path)
            raise _invalid(message, [{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [violation],
            }])
        child_kind = schema[camel]
        if child_kind is None:
            continue
        segment = _snake(camel)
        items = child if isinstance(child, list) else [child]
        for index, item in enumerate(items):
            suffix = f"[{index}]" if isinstance(child, list) else ""
            _check_fields(item, child_kind, [*path, segment + suffix])


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json",
        charset="UTF-8",
    )
