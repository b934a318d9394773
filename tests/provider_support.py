"""Settings and checks shared by the provider tests: fast retries, timeouts and polls."""

from __future__ import annotations

import io

from PIL import Image

from bot.errors import ProviderError
from bot.models import ImageData
from bot.providers.http import RetryPolicy, Timeouts
from bot.providers.polling import PollSchedule

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
FAST_TIMEOUTS = Timeouts(connect=2.0, total=5.0)
# Short enough that a server that never answers costs three times this, not minutes.
HANG_TIMEOUTS = Timeouts(connect=1.0, total=0.3)
FAST_POLL = PollSchedule.fixed(0.01, 3.0)
SHORT_DEADLINE = PollSchedule.fixed(0.01, 0.3)
WRONG_KEY = "sk-wrong-key-0123456789abcdef"


def reference(color: tuple[int, int, int], fmt: str = "PNG") -> ImageData:
    """A real little image to send as a reference."""
    out = io.BytesIO()
    Image.new("RGB", (6, 4), color).save(out, format=fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
    return ImageData(out.getvalue(), mime)


def assert_secret_free(error: ProviderError, *secrets: str) -> None:
    """No API key in anything an error exposes: its text, repr, detail, body or message."""
    exposed = [str(error), repr(error), error.detail, error.user_message]
    exposed.append(str(getattr(error, "body", "")))
    exposed.append(str(getattr(error, "message", "")))
    exposed.append(str(getattr(error, "headers", "")))
    for secret in secrets:
        for text in exposed:
            assert secret not in text, f"{secret!r} leaked into {text!r}"
