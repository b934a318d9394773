"""Content-addressed image files under DATA_DIR/images/ab/abcdef....ext.

Writes go to a temporary file and are renamed into place, so a crash never leaves a
half-written image under its final name. File I/O runs on this module's own two threads,
never the default pool (where a burst of 1.5 MB writes queued behind each other and in
front of everything else sent there).

Durability matches the database's (WAL with synchronous=NORMAL): safe against a crash of
the process, not against losing power. A file is not fsynced: once write() and
os.replace() return, the data and the rename are in the kernel's page cache and survive
the process dying at any later point; the images row is committed only after that. After
a power loss or an OS crash the newest commits may be gone, and a row that survived may
name a file that is missing or empty (ext4 usually flushes a replaced file's data with
the rename, but nothing here waits for it). fsync per 1.5 MB result took up to 900 ms
under load, for a guarantee the database itself does not give.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from bot.models import ImageData
from bot.storage.db import Database
from bot.storage.group_commit import Statement

T = TypeVar("T")

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

# Bounded: at most two files written or read at once, whatever the burst.
_IO = ThreadPoolExecutor(max_workers=2, thread_name_prefix="peel-blobs")


async def _in_io_thread(function: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_IO, function, *args)


class BlobStore:
    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root

    def _path(self, sha256: str, mime: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{_EXTENSIONS.get(mime, 'bin')}"

    async def put(self, image: ImageData) -> str:
        """Store an image once; returns its sha256."""
        digest = await self.write_file(image)
        await self.db.batched(*self.row(digest, image))
        return digest

    async def write_file(self, image: ImageData) -> str:
        """The file half of `put`: the caller commits `row()` itself, after this returns."""
        return await _in_io_thread(_write_file, self, image)

    @staticmethod
    def row(digest: str, image: ImageData) -> Statement:
        return (
            "INSERT OR IGNORE INTO images (sha256, mime, size) VALUES (?, ?, ?)",
            (digest, image.mime, len(image.data)),
        )

    async def get(self, sha256: str) -> ImageData:
        row = await self.db.fetchone("SELECT mime FROM images WHERE sha256 = ?", (sha256,))
        if row is None:
            raise FileNotFoundError(sha256)
        path = self._path(sha256, row["mime"])
        data = await _in_io_thread(path.read_bytes)
        return ImageData(data=data, mime=row["mime"])

    async def get_many(self, digests: list[str]) -> list[ImageData]:
        return [await self.get(digest) for digest in digests]


def _write_file(store: BlobStore, image: ImageData) -> str:
    digest = image.sha256
    path = store._path(digest, image.mime)
    if path.exists():
        return digest
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(image.data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest
