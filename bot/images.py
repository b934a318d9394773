"""Reference images: capped downloads, identification by bytes, validation and downscaling.

Every image a member supplies passes through here before a provider sees it:

1. `split_by_limit` drops the images past the per-turn limit *before* anything is downloaded;
2. `download_capped` streams a file and stops once it passes 10 MB, whatever Content-Length says;
3. `prepare_reference` identifies the type from the bytes, refuses decompression bombs from the
   header alone, decodes fully to catch truncation, and shrinks what is larger than the model
   can use. The Pillow work runs on a dedicated two-thread pool, never on the event loop:
   Pillow releases the GIL, so two workers use both cores without stalling the loop
   (specs/performance.md sections 4 and 5, goals G4 and G9).

What is sent upstream:

- an image that fits (longer edge <= MAX_EDGE, at most MAX_PASSTHROUGH_BYTES) goes byte for
  byte as uploaded, after a full decode has proved it intact;
- a larger one (in pixels or in bytes) is downscaled (a JPEG is decoded at 1/2, 1/4 or 1/8
  scale with `draft()`), its EXIF orientation applied, and re-encoded as JPEG q90 without the
  EXIF block (no GPS leaves).
  JPEG because it encodes in ~4 ms where WebP takes ~150 ms and PNG ~235 ms;
- an image whose alpha channel is actually used stays PNG (fast level 1) when that comes out
  at most MAX_PASSTHROUGH_BYTES: cut-outs, stickers and logos are usually about their
  transparency, and flattening them would change the subject. A larger one (photographic
  noise under an alpha channel) is composited onto white and sent as JPEG;
- a GIF, which the model does not accept, becomes its first frame as PNG (same size rule);
  an animated WebP becomes its first frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import struct
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import aiohttp
from PIL import (
    GifImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
)

from bot.errors import BadAttachment
from bot.models import MAX_REFERENCE_IMAGES, ImageData, sniff_mime

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_IMAGE_BYTES = 10 * 1024 * 1024
# Decompression-bomb guard, checked on the header before any pixel is decoded. 50 MP admits
# the high-resolution modes of phone cameras; decoding that as RGBA costs up to 200 MB.
MAX_PIXELS = 50_000_000
# Longer edge the model can use: output is 1K only, and input is billed per image, not per pixel.
MAX_EDGE = 1536
# Vertex documents 7 MB per inline image for 3.1 Flash-Lite (specs/providers.md section 1.8).
MAX_PASSTHROUGH_BYTES = 7_000_000
JPEG_QUALITY = 90
IMAGE_WORKERS = 2
_WORKER_NICENESS = 10
_CHUNK_BYTES = 64 * 1024
# Raw downloads one turn holds at once: one arriving while the workers shrink two others.
_FETCH_CONCURRENCY = IMAGE_WORKERS + 1

PNG = "image/png"
JPEG = "image/jpeg"
WEBP = "image/webp"
GIF = "image/gif"

NOT_AN_IMAGE = "it isn't an image (PNG, JPEG or WebP)"
CORRUPT = "the image data is truncated or corrupt"
LINK_EXPIRED = "Discord no longer serves this file (the link expired); upload it again"
TOO_SLOW = "downloading it took too long"
DOWNLOAD_FAILED = "it could not be downloaded; try again"

# Header parsers for the sniffed type only: no other Pillow plugin ever sees member data.
# They are used instead of Image.open so that our pixel check, which names the dimensions,
# runs before Pillow's own bomb check (which raises inside Image.open without the size).
_OPENERS: dict[str, Callable[[IO[bytes]], ImageFile.ImageFile]] = {
    PNG: PngImagePlugin.PngImageFile,
    JPEG: JpegImagePlugin.jpeg_factory,
    WEBP: WebPImagePlugin.WebPImageFile,
    GIF: GifImagePlugin.GifImageFile,
}
# What Pillow raises on data it cannot parse or that ends early.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """An attachment the Discord glue has seen but not downloaded yet."""

    filename: str
    url: str
    declared_size: int | None = None


def too_large_reason(max_bytes: int = MAX_IMAGE_BYTES) -> str:
    return f"it is larger than {max_bytes / (1024 * 1024):.3g} MB"


def split_by_limit(
    items: Sequence[T], *, already: int, limit: int = MAX_REFERENCE_IMAGES
) -> tuple[list[T], list[T]]:
    """Split into (used, left out): `already` images (the previous result) count first."""
    room = max(0, limit - already)
    return list(items[:room]), list(items[room:])


def left_out_warning(filenames: Sequence[str], *, already: int, limit: int) -> str:
    counted = " (the image being edited counts as one)" if already else ""
    return f"Only {limit} images can be used per turn{counted}; left out: {', '.join(filenames)}"


# ---------------------------------------------------------------------------- downloading


async def download_capped(
    session: aiohttp.ClientSession,
    url: str,
    *,
    filename: str,
    max_bytes: int = MAX_IMAGE_BYTES,
    timeout: float = 30.0,  # noqa: ASYNC109, RUF100 (the API names it; aiohttp applies it)
) -> bytes:
    """Fetch an attachment, refusing it as soon as it proves larger than `max_bytes`.

    A declared Content-Length only lets us refuse early; the stream itself is counted, so a
    missing or lying header cannot make us hold more than `max_bytes` plus one chunk.
    """
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), raise_for_status=False
        ) as response:
            _check_response(response, filename, max_bytes)
            return await _read_capped(response, filename, max_bytes)
    except TimeoutError as exc:  # aiohttp's timeouts are TimeoutError subclasses
        raise BadAttachment(filename, TOO_SLOW) from exc
    except aiohttp.ClientError as exc:
        log.info("downloading attachment %r failed: %s", filename, exc)
        raise BadAttachment(filename, DOWNLOAD_FAILED) from exc


def _check_response(response: aiohttp.ClientResponse, filename: str, max_bytes: int) -> None:
    if response.status in (403, 404, 410):
        raise BadAttachment(filename, LINK_EXPIRED)
    if not 200 <= response.status < 300:
        log.info("attachment %r answered HTTP %d", filename, response.status)
        raise BadAttachment(filename, DOWNLOAD_FAILED)
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise BadAttachment(filename, too_large_reason(max_bytes))


async def _read_capped(response: aiohttp.ClientResponse, filename: str, max_bytes: int) -> bytes:
    buffer = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > max_bytes:
            response.close()  # drop the connection rather than drain the rest
            raise BadAttachment(filename, too_large_reason(max_bytes))
    return bytes(buffer)


async def fetch_references(
    session: aiohttp.ClientSession,
    sources: Sequence[SourceFile],
    *,
    already: int = 0,
    limit: int = MAX_REFERENCE_IMAGES,
) -> tuple[list[ImageData], list[str]]:
    """Download and prepare a turn's attachments; those past the limit are never downloaded.

    Each file is prepared as soon as it arrives, and at most _FETCH_CONCURRENCY raw files are
    held at once, so 14 large photos cost a turn about 30 MB rather than 140 (goal G7).
    """
    used, left_out = split_by_limit(sources, already=already, limit=limit)
    for source in used:  # Discord states each size: refuse before fetching anything
        if source.declared_size is not None and source.declared_size > MAX_IMAGE_BYTES:
            raise BadAttachment(source.filename, too_large_reason())
    gate = asyncio.Semaphore(_FETCH_CONCURRENCY)
    images = await _gather_in_order([_fetch_one(session, source, gate) for source in used])
    if not left_out:
        return images, []
    names = [source.filename for source in left_out]
    return images, [left_out_warning(names, already=already, limit=limit)]


async def _fetch_one(
    session: aiohttp.ClientSession, source: SourceFile, gate: asyncio.Semaphore
) -> ImageData:
    async with gate:
        data = await download_capped(session, source.url, filename=source.filename)
        return await prepare_reference(data, filename=source.filename)


# ---------------------------------------------------------------------------- preparing


_executor: ThreadPoolExecutor | None = None


def _init_worker() -> None:
    # Pillow's own limits back up the header check (it also checks GIF frame extents).
    # Process-wide settings, but nothing else in Peel decodes member-supplied images.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    # Two busy workers fill both cores; a lower priority (per thread on Linux) lets the event
    # loop thread be scheduled first, so acknowledgements stay prompt while images shrink
    # (measured, 14 photos on 2 busy cores: median max loop lag 32 -> 19 ms, p99 8 -> 6.5 ms).
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _WORKER_NICENESS)


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=IMAGE_WORKERS, thread_name_prefix="peel-images", initializer=_init_worker
        )
    return _executor


def close_executor() -> None:
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=False, cancel_futures=True)
        _executor = None


async def prepare_reference(data: bytes, *, filename: str, max_edge: int = MAX_EDGE) -> ImageData:
    """Validate one image and make it fit the model; raises BadAttachment naming the problem."""
    if len(data) > MAX_IMAGE_BYTES:
        raise BadAttachment(filename, too_large_reason())
    mime = sniff_mime(data)
    if mime is None:
        raise BadAttachment(filename, NOT_AN_IMAGE)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _get_executor(), _prepare_sync, data, mime, filename, max_edge
    )


async def _gather_in_order(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on failure raise the first one in input order and cancel the rest.

    Input order, not completion order, so the member hears about the same file every time.
    """
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        return [await task for task in tasks]
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        # Collect every outcome so no "exception was never retrieved" is logged.
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------- worker thread


def _prepare_sync(data: bytes, mime: str, filename: str, max_edge: int) -> ImageData:
    try:
        with _OPENERS[mime](io.BytesIO(data)) as im:  # reads the header only
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise BadAttachment(filename, _pixels_reason((width, height)))
            if not _needs_reencode(im, mime, len(data), max_edge):
                _decode_to_check(im)
                return ImageData(data=data, mime=mime)
            return _reencode(im, mime, max_edge)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own check (WebP and GIF headers) fired first, without telling the size.
        raise BadAttachment(filename, _pixels_reason(None)) from exc
    except _DECODE_ERRORS as exc:
        log.debug("attachment %r does not decode: %s", filename, exc)
        raise BadAttachment(filename, CORRUPT) from exc


def _pixels_reason(size: tuple[int, int] | None) -> str:
    limit = f"{MAX_PIXELS // 1_000_000} megapixels"
    if size is None:
        return f"it is too large in pixels (more than {limit})"
    return f"it is too large in pixels ({size[0]}×{size[1]}; the limit is {limit})"


def _needs_reencode(im: ImageFile.ImageFile, mime: str, n_bytes: int, max_edge: int) -> bool:
    return (
        mime == GIF
        or max(im.size) > max_edge
        or n_bytes > MAX_PASSTHROUGH_BYTES
        or (mime == WEBP and bool(getattr(im, "is_animated", False)))
    )


def _decode_to_check(im: ImageFile.ImageFile) -> None:
    """Decode everything once, to prove the file complete before it is sent as is."""
    if isinstance(im, JpegImagePlugin.JpegImageFile):
        # At 1/8 scale libjpeg still reads every entropy-coded segment, so truncation
        # shows just the same, for a fraction of the work.
        im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
    im.load()


def _reencode(im: ImageFile.ImageFile, mime: str, max_edge: int) -> ImageData:
    if isinstance(im, JpegImagePlugin.JpegImageFile) and max(im.size) > max_edge:
        # Let libjpeg scale by 1/2..1/8 while decoding: half the cost of a full decode.
        im.draft("RGB", _fit(im.size, max_edge))
    im.load()  # first frame only, for GIF and animated WebP
    _apply_orientation(im)
    frame = _normalise_mode(im)
    size = _fit(frame.size, max_edge)
    if frame.size != size:
        frame = frame.resize(size, Image.Resampling.LANCZOS)
    icc = im.info.get("icc_profile") if _same_colours(im.mode, frame.mode) else None
    if mime == GIF or _alpha_in_use(frame):
        png = _save(frame, "PNG", compress_level=1, icc_profile=icc)
        if len(png) <= MAX_PASSTHROUGH_BYTES:
            return ImageData(data=png, mime=PNG)
    jpeg = _save(_flatten(frame), "JPEG", quality=JPEG_QUALITY, icc_profile=icc)
    return ImageData(data=jpeg, mime=JPEG)


def _fit(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    width, height = size
    longest = max(width, height)
    if longest <= max_edge:
        return size
    scale = max_edge / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _apply_orientation(im: Image.Image) -> None:
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        # A broken EXIF block is no reason to refuse an image that decodes.
        log.debug("ignoring unreadable EXIF orientation", exc_info=True)


def _normalise_mode(im: Image.Image) -> Image.Image:
    """RGB, L or RGBA: what JPEG and PNG both take and LANCZOS can resize."""
    if "transparency" in im.info or im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return im if im.mode == "RGBA" else im.convert("RGBA")
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


def _same_colours(source_mode: str, output_mode: str) -> bool:
    """Whether the source's ICC profile still describes the output (not after CMYK -> RGB)."""
    return source_mode.removesuffix("A") == output_mode.removesuffix("A")


def _alpha_in_use(im: Image.Image) -> bool:
    if im.mode != "RGBA":
        return False
    lowest = im.getchannel("A").getextrema()[0]  # one band: (min, max)
    return isinstance(lowest, int | float) and lowest < 255


def _flatten(im: Image.Image) -> Image.Image:
    if im.mode != "RGBA":
        return im
    background = Image.new("RGB", im.size, (255, 255, 255))
    background.paste(im, mask=im.getchannel("A"))
    return background


def _save(im: Image.Image, image_format: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=image_format, **params)
    return buffer.getvalue()
