"""Every error type Peel raises, in one tree.

    PeelError
    ├── UserError                  the member did something we refuse; `.user_message` is shown
    │   ├── BadAttachment          not an image, too large, truncated, a decompression bomb
    │   ├── TooManyImages          more references than the route accepts
    │   ├── InvalidRequest         an overlong prompt, an unsupported option, nothing to edit
    │   ├── QuotaExceeded          the reservation does not fit the member's budget
    │   ├── TooManyJobs            the member already has MAX_JOBS_PER_USER jobs
    │   └── NotAllowed             not the owner, missing permission
    └── ProviderError              the upstream failed; operator detail for logs, a safe message
        ├── ProviderHTTPError      non-2xx: status, body (secrets scrubbed), retry_after
        │   ├── ProviderAuthError  401/403, Gemini's API_KEY_INVALID: the operator must act
        │   ├── ProviderRateLimited 429
        │   └── ProviderUnavailable 5xx
        ├── ProviderTimeout        no answer within the connect or total timeout, or polling ran out
        ├── ProviderBadResponse    an answer we could not understand
        ├── ContentBlocked         a safety block (never retried); carries what was billed
        ├── NoImageReturned        the model answered without an image; carries what was billed
        └── TaskFailed             an async task ended failed or cancelled

User-facing text lives here, next to the types, so every refusal reads the same wherever
it is raised. Operator detail (`detail`) never reaches Discord; secrets never reach either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.models import ZERO_USAGE, Usage

_SECRET_PATTERNS = (
    re.compile(r"([?&]key=)[^&\s\"']+", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.IGNORECASE),
    re.compile(r"(x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+", re.IGNORECASE),
    re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.\-]+"),
)


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove API keys, bearer tokens and interaction tokens from text bound for logs."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class PeelError(Exception):
    """Base of every error Peel raises on purpose."""


class UserError(PeelError):
    """A refusal whose message is written for the member who caused it."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class BadAttachment(UserError):
    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(f"`{filename}` can't be used: {reason}")
        self.filename = filename
        self.reason = reason


class TooManyImages(UserError):
    pass


class InvalidRequest(UserError):
    pass


class NotAllowed(UserError):
    pass


class TooManyJobs(UserError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} image job{'s' if limit != 1 else ''} queued or running. "
            "Wait for one to finish, then try again."
        )
        self.limit = limit


class QuotaExceeded(UserError):
    def __init__(self, needed: int, remaining: int, resets_at: int | None) -> None:
        when = f" Your budget resets <t:{resets_at}:R>." if resets_at else ""
        super().__init__(
            f"This needs about {needed:,} tokens but you have {max(remaining, 0):,} left.{when}"
        )
        self.needed = needed
        self.remaining = remaining
        self.resets_at = resets_at


class ProviderError(PeelError):
    """The upstream failed. `detail` is for operators; `user_message` is safe for members."""

    user_message = "The image service failed. Nothing was charged; please try again later."
    retryable = False

    def __init__(self, detail: str, *, provider: str = "", usage: Usage = ZERO_USAGE) -> None:
        super().__init__(scrub(detail))
        self.detail = scrub(detail)
        self.provider = provider
        # What the provider billed for this failed call (blocks can still bill the prompt).
        self.usage = usage


class ProviderHTTPError(ProviderError):
    def __init__(
        self,
        status: int,
        body: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}", provider=provider)
        self.status = status
        self.body = scrub(body)
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    @property
    def user_message(self) -> str:  # type: ignore[override]
        if 400 <= self.status < 500:
            return (
                "The image service rejected this request. Nothing was charged; try rewording "
                "it or using other images."
            )
        return ProviderError.user_message


class ProviderAuthError(ProviderHTTPError):
    user_message = (
        "The image service refused Peel's credentials. A server admin needs to check the "
        "bot's API key. Nothing was charged."
    )


class ProviderRateLimited(ProviderHTTPError):
    user_message = "The image service is busy right now. Nothing was charged; try again shortly."
    retryable = True


class ProviderUnavailable(ProviderHTTPError):
    user_message = (
        "The image service is unavailable right now. Nothing was charged; try again shortly."
    )
    retryable = True


class ProviderTimeout(ProviderError):
    user_message = "The image service took too long to answer. Nothing was charged; try again."
    retryable = True


class ProviderBadResponse(ProviderError):
    user_message = "The image service sent an answer Peel could not read. Nothing was charged."


_BLOCK_MESSAGES = {
    "IMAGE_SAFETY": "The model's safety filter blocked the image it made.",
    "IMAGE_PROHIBITED_CONTENT": "The model refused to make an image with prohibited content.",
    "PROHIBITED_CONTENT": "The request was blocked as prohibited content.",
    "SAFETY": "The request was blocked by the model's safety filter.",
    "BLOCKLIST": "The request contains blocked terms.",
    "SPII": "The request was blocked because it may involve sensitive personal information.",
    "IMAGE_RECITATION": "The image was blocked because it resembled existing copyrighted work.",
    "RECITATION": "The answer was blocked because it resembled existing copyrighted work.",
    "OTHER": "The request was blocked by the model.",
}


class ContentBlocked(ProviderError):
    """A safety or policy block. Never retried: the same prompt would be blocked again."""

    def __init__(
        self, reason: str, *, text: str | None = None, provider: str = "", usage: Usage = ZERO_USAGE
    ) -> None:
        super().__init__(f"blocked: {reason}", provider=provider, usage=usage)
        self.reason = reason
        self.text = text

    @property
    def user_message(self) -> str:  # type: ignore[override]
        base = _BLOCK_MESSAGES.get(self.reason, "The request was blocked by the model.")
        return f"{base} Try a different prompt or image."


_NO_IMAGE_MESSAGES = {
    "NO_IMAGE": "The model did not produce an image this time. Try rephrasing the prompt.",
    "IMAGE_OTHER": "The model could not finish the image. Try again or rephrase the prompt.",
    "MAX_TOKENS": "The model ran out of room before finishing the image. Try a shorter prompt.",
    "TEXT_ONLY": "The model answered with text instead of an image.",
    "EMPTY": "The model returned nothing. Try again.",
}


class NoImageReturned(ProviderError):
    """The model answered without an image (NO_IMAGE, a text-only reply, MAX_TOKENS...)."""

    def __init__(
        self, reason: str, *, text: str | None = None, provider: str = "", usage: Usage = ZERO_USAGE
    ) -> None:
        super().__init__(f"no image: {reason}", provider=provider, usage=usage)
        self.reason = reason
        self.text = text

    @property
    def user_message(self) -> str:  # type: ignore[override]
        base = _NO_IMAGE_MESSAGES.get(self.reason, "The model did not produce an image.")
        if self.text:
            said = self.text.strip().replace("\n", " ")
            if len(said) > 300:
                said = said[:297] + "..."
            return f"{base} It said: “{said}”"
        return base


_POLICY_WORDS = ("policy", "safety", "prohibit", "moderat", "sensitive")


class TaskFailed(ProviderError):
    """An asynchronous task (GMI, APIMart, LinkModel) ended failed or cancelled."""

    def __init__(self, status: str, message: str = "", *, provider: str = "") -> None:
        super().__init__(f"task {status}: {message}", provider=provider)
        self.status = status
        self.message = scrub(message)

    @property
    def user_message(self) -> str:  # type: ignore[override]
        lowered = self.message.lower()
        if any(word in lowered for word in _POLICY_WORDS):
            return "The image service blocked this request. Try a different prompt or image."
        if self.status.lower().startswith("cancel"):
            return "The image service cancelled the job. Nothing was charged; try again."
        return "The image service could not make this image. Nothing was charged; try again."


def user_message_for(error: BaseException) -> str:
    """The text a member sees for any exception; unknown ones get a generic apology."""
    if isinstance(error, UserError):
        return error.user_message
    if isinstance(error, ProviderError):
        return error.user_message
    return "Something went wrong on Peel's side. Nothing was charged; please try again."
