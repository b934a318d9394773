"""Plain data passed between the service, the providers and storage.

Nothing here imports discord, aiohttp or the database: these types are the shared
vocabulary of the core.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# The aspect ratios members may choose (DESIGN section 1). None means "auto": let the model pick.
ASPECT_RATIOS: tuple[str, ...] = (
    "1:1", "3:2", "2:3", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)

# Output and input facts of gemini-3.1-flash-lite-image (specs/providers.md sections 0 and 1.8).
IMAGE_OUTPUT_TOKENS = 1120
IMAGE_INPUT_TOKENS = 1120
MAX_REFERENCE_IMAGES = 14
MAX_PROMPT_CHARS = 4000


def sniff_mime(data: bytes) -> str | None:
    """An image's type from its magic bytes (PNG, JPEG, WebP, GIF), else None.

    Filenames and declared content types are never trusted; this is the one place that
    decides what an image is.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


@dataclass(frozen=True, slots=True)
class ImageData:
    """An image's bytes with its MIME type (always sniffed from the bytes, never trusted)."""

    data: bytes
    mime: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def extension(self) -> str:
        return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(self.mime, "bin")


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one provider call used, split the way they are priced.

    `reported` is False when the figures are Peel's own estimate because the provider
    reported nothing. `cost_usd` is set only when the provider itself stated a price.
    """

    input_tokens: int = 0
    output_image_tokens: int = 0
    output_text_tokens: int = 0
    thinking_tokens: int = 0
    reported: bool = True
    cost_usd: float | None = None

    @property
    def output_tokens(self) -> int:
        return self.output_image_tokens + self.output_text_tokens

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.thinking_tokens

    def __add__(self, other: Usage) -> Usage:
        cost: float | None = None
        if self.cost_usd is not None or other.cost_usd is not None:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_image_tokens=self.output_image_tokens + other.output_image_tokens,
            output_text_tokens=self.output_text_tokens + other.output_text_tokens,
            thinking_tokens=self.thinking_tokens + other.thinking_tokens,
            reported=self.reported and other.reported,
            cost_usd=cost,
        )


ZERO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider route can do, declared as data and checked before any call."""

    max_reference_images: int
    max_images_per_request: int
    reports_usage: bool
    multi_turn: bool


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """One generate or edit turn: the prompt and every reference image, previous result first."""

    prompt: str
    images: tuple[ImageData, ...] = ()
    aspect_ratio: str | None = None


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What the model answered: images, an optional caption, usage and non-fatal warnings."""

    images: tuple[ImageData, ...]
    text: str | None
    usage: Usage
    warnings: tuple[str, ...] = field(default=())
