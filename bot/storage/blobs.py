"""Content-addressed image files under DATA_DIR/images/ab/abcdef....ext.

Writes go to a temporary file and are renamed into place, so a crash never leaves a
half-written image under its final name. File I/O runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bot.models import ImageData
from bot.storage.db import Database

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class BlobStore:
    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root

    def _path(self, sha256: str, mime: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{_EXTENSIONS.get(mime, 'bin')}"

    async def put(self, image: ImageData) -> str:
        """Store an image once; returns its sha256."""
        digest = await asyncio.to_thread(_write_file, self, image)
        await self.db.write(
            "INSERT OR IGNORE INTO images (sha256, mime, size) VALUES (?, ?, ?)",
            (digest, image.mime, len(image.data)),
        )
        return digest

    async def get(self, sha256: str) -> ImageData:
        row = await self.db.fetchone("SELECT mime FROM images WHERE sha256 = ?", (sha256,))
        if row is None:
            raise FileNotFoundError(sha256)
        path = self._path(sha256, row["mime"])
        data = await asyncio.to_thread(path.read_bytes)
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
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest
