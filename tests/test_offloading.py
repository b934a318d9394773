"""Where the Gemini provider does its JSON and base64 work: off the event loop when it is big.

base64 and JSON hold the GIL, so big bodies go to the single codec worker
(specs/performance.md section 5); a text-only request body is encoded inline, since queueing
it behind other calls' 2 MB answers on that worker would cost far more than encoding it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.models import ImageData, TurnRequest
from bot.providers import gemini as gemini_module
from bot.providers.gemini import INLINE_ENCODE_BYTES, GeminiProvider
from bot.providers.http import Timeouts
from tests.fakes.gemini import FakeGemini, make_png

Threads = dict[str, list[str]]


@pytest.fixture
async def provider() -> AsyncIterator[GeminiProvider]:
    async with FakeGemini() as fake, aiohttp.ClientSession() as session:
        yield GeminiProvider(
            session, api_key=fake.api_key, base_url=fake.base_url,
            timeouts=Timeouts(connect=2, total=10),
        )


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Threads:
    """The name of the thread each call of the encoder and the parser ran on."""
    seen: Threads = {"encode_json": [], "parse_response": []}

    def recording(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            seen[name].append(threading.current_thread().name)
            return original(*args)

        return run

    for name in seen:
        monkeypatch.setattr(gemini_module, name, recording(name, getattr(gemini_module, name)))
    return seen


async def test_a_text_only_request_is_encoded_inline_and_the_answer_parsed_off_the_loop(
    provider: GeminiProvider, threads: Threads
) -> None:
    result = await provider.run_turn(TurnRequest(prompt="a quiet harbour at dawn"))
    assert result.images
    loop_thread = threading.current_thread().name
    assert threads["encode_json"] == [loop_thread]
    assert len(threads["parse_response"]) == 1
    assert threads["parse_response"][0].startswith("peel-codec")


async def test_a_request_with_images_is_encoded_on_the_codec_worker(
    provider: GeminiProvider, threads: Threads
) -> None:
    reference = make_png(64, 48) + os.urandom(INLINE_ENCODE_BYTES)  # trailing bytes: size
    request = TurnRequest(prompt="in this style", images=(ImageData(reference, "image/png"),))
    await provider.run_turn(request)
    assert len(threads["encode_json"]) == 1
    assert threads["encode_json"][0].startswith("peel-codec")
