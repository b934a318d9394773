"""The small readers the task routes share: image sniffing, URLs, messages and prices."""

from __future__ import annotations

from typing import Any

import pytest

from bot.providers.taskapi import as_cost, message_in, sniff_mime, urls_in
from tests.provider_support import reference


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_sniff_mime_reads_the_bytes(fmt: str) -> None:
    image = reference((1, 2, 3), fmt)
    assert sniff_mime(image.data) == image.mime


@pytest.mark.parametrize("data", [b"", b"<html>", b"RIFF\x00\x00\x00\x00WAVE"])
def test_sniff_mime_refuses_anything_else(data: bytes) -> None:
    assert sniff_mime(data) is None


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        ("https://x/1.png", ("https://x/1.png",)),
        (["https://x/1.png", {"url": "https://x/2.png", "width": 1}], ("https://x/1.png",
                                                                        "https://x/2.png")),
        ([{"url": ["https://x/1.png", "https://x/2.png"]}], ("https://x/1.png",
                                                             "https://x/2.png")),
        ([], ()), (None, ()), ("", ()), ([{"width": 1}], ()),
    ],
)
def test_urls_in_every_shape(value: Any, urls: tuple[str, ...]) -> None:
    assert urls_in(value) == urls


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"error": {"code": 1, "message": "nested"}}, "nested"),
        ({"error": "Unauthorized", "message": "bad key"}, "Unauthorized: bad key"),
        ({"error": "quota"}, "quota"),
        ({"msg": "token expired"}, "token expired"),
        ({"error_message": "boom"}, "boom"),
        ({"detail": "gone"}, "gone"),
        ({"status": "failed"}, ""),
        ("plain text", "plain text"),
        (42, ""),
    ],
)
def test_message_in_every_key(doc: Any, message: str) -> None:
    assert message_in(doc) == message


@pytest.mark.parametrize(
    ("value", "cost"),
    [(0.074, 0.074), (1, 1.0), ("0.02", 0.02), ("free", None), (True, None), (None, None),
     (-1, None), ("nan", None), ("inf", None)],
)
def test_as_cost(value: Any, cost: float | None) -> None:
    assert as_cost(value) == cost
