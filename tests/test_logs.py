"""Secrets never reach a log line, whichever way they get into the text."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.errors import ProviderHTTPError, scrub
from bot.logs import SecretFilter, configure_logging

SECRETS = ("discord-bot-token-abc", "gemini-key-xyz")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("DEBUG", SECRETS)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], root.level = saved_handlers, saved_level
    logging.getLogger("discord").setLevel(logging.NOTSET)


def test_known_secrets_are_masked(captured: io.StringIO) -> None:
    log = logging.getLogger("peel.test")
    log.info("token is %s and key is %s", "discord-bot-token-abc", "gemini-key-xyz")
    text = captured.getvalue()
    assert "discord-bot-token-abc" not in text and "gemini-key-xyz" not in text
    assert "token is *** and key is ***" in text


def test_urls_with_keys_and_interaction_tokens_are_masked(captured: io.StringIO) -> None:
    log = logging.getLogger("discord.webhook.async_")
    log.warning("POST https://example.test/v1beta/models/m:generateContent?key=AIzaSECRET&alt=sse")
    log.warning("Webhook ID 123 with POST https://discord.com/api/v10/webhooks/123/"
                "aW50ZXJhY3Rpb246MTIz.tokenpart has returned status code 200")
    log.warning("POST /api/v10/interactions/987/itok_abcDEF-123/callback")
    log.warning("Authorization: Bearer sk-live-123456")
    text = captured.getvalue()
    for secret in ("AIzaSECRET", "aW50ZXJhY3Rpb246MTIz", "itok_abcDEF-123", "sk-live-123456"):
        assert secret not in text
    assert "?key=***" in text and "/webhooks/123/***" in text


def test_tracebacks_are_masked(captured: io.StringIO) -> None:
    log = logging.getLogger("peel.test")
    try:
        raise RuntimeError("failed calling https://x.test/?key=gemini-key-xyz")
    except RuntimeError:
        log.exception("provider call failed")
    text = captured.getvalue()
    assert "Traceback" in text and "gemini-key-xyz" not in text


def test_provider_errors_carry_no_keys() -> None:
    error = ProviderHTTPError(400, '{"url": "https://h/?key=AIzaLEAK", "auth": "Bearer abc.def"}')
    assert "AIzaLEAK" not in str(error) and "AIzaLEAK" not in error.body
    assert "abc.def" not in error.detail
    assert scrub("x-goog-api-key: AIzaLEAK2") == "x-goog-api-key: ***"


def test_filter_leaves_clean_records_alone() -> None:
    record = logging.LogRecord("n", logging.INFO, "f", 1, "hello %s", ("world",), None)
    assert SecretFilter(SECRETS).filter(record)
    assert record.getMessage() == "hello world"
