"""Result images as discord.py attachments that aiohttp sends without copying them.

discord.py wraps every attachment in a file object, and aiohttp sends an `io.BytesIO` in
64 kB slices: it first copies the whole buffer (`getbuffer()` un-shares the bytes the
BytesIO was built on), then reads each slice into a new bytes object and yields to the loop
between slices. For a 1.5 MB result that is 1.5 MB copied twice and some 25 trips through
the event loop per upload, on the loop thread, for every job.

`ImageUpload` is a BytesIO (so discord.File accepts it, seeks it and keeps it open across
retries) that also keeps the bytes it was built on. The payload registered for it hands
those bytes to the transport as memoryview slices of 256 kB: nothing is copied on our side,
and the transport copies at most one slice that the socket could not take at once (one
1.5 MB write would have it copy up to the whole image per upload in flight).
"""

from __future__ import annotations

import io
from typing import Any

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Order, Payload, register_payload

SLICE = 256 * 1024


class ImageUpload(io.BytesIO):
    """An in-memory file over `data`, sent by aiohttp in one write."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data

    def close(self) -> None:
        # discord.py closes its files once sent; the image goes with it, even while the
        # File is still referenced from discord.py's own reference cycles.
        self.data = b""
        super().close()


class _ImageUploadPayload(Payload):
    _autoclose = True  # nothing to close: the bytes stay with their owner

    def __init__(self, value: ImageUpload, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        # From where discord.py left the file (it seeks back before each retry).
        view = memoryview(value.data)[value.tell():]
        super().__init__(view, *args, **kwargs)
        self._size = view.nbytes

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return bytes(self._value)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view: memoryview = self._value
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, view.nbytes, SLICE):
            await writer.write(view[start:start + SLICE])  # waits while the socket is full


register_payload(_ImageUploadPayload, ImageUpload, order=Order.try_first)
