"""GMI-specific shapes: the synchronous answer, queued requests, both media_urls forms, the
payload built for references, and every status and failure-key variant clients accept."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.errors import ProviderBadResponse, TaskFailed
from bot.models import TurnRequest
from bot.providers.gmi import DEFAULT_BASE_URL, GmiProvider, parse_request
from bot.providers.polling import TaskState
from tests.fakes.gmi import FakeGmi
from tests.provider_support import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, reference


@pytest.fixture
async def fake() -> AsyncIterator[FakeGmi]:
    server = FakeGmi()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def gmi(fake: FakeGmi) -> AsyncIterator[GmiProvider]:
    async with aiohttp.ClientSession() as session:
        yield GmiProvider(
            session, api_key=fake.api_key, base_url=fake.base_url, retry=FAST_RETRY,
            timeouts=FAST_TIMEOUTS, poll=FAST_POLL,
        )


def status_queries(fake: FakeGmi) -> list[str]:
    return [r.path for r in fake.requests if r.method == "GET" and "/requests/" in r.path]


def test_defaults_to_the_documented_base_url() -> None:
    assert DEFAULT_BASE_URL == "https://console.gmicloud.ai/api/v1/ie/requestqueue/apikey"


async def test_a_synchronous_answer_needs_no_polling(gmi: GmiProvider, fake: FakeGmi) -> None:
    result = await gmi.run_turn(TurnRequest("a cat"))

    assert result.images[0].data == fake.image
    assert status_queries(fake) == []
    assert result.usage.reported is False
    assert result.usage.cost_usd is None  # GMI states no price


async def test_a_queued_request_is_polled_to_success(gmi: GmiProvider, fake: FakeGmi) -> None:
    fake.push("queued")

    result = await gmi.run_turn(TurnRequest("a cat"))

    assert result.images[0].data == fake.image
    (task_id,) = fake.tasks
    # dispatched, processing, then success
    assert status_queries(fake) == [f"{FakeGmi.prefix}/requests/{task_id}"] * 3


async def test_media_urls_as_bare_strings(gmi: GmiProvider, fake: FakeGmi) -> None:
    fake.push("string_urls")
    result = await gmi.run_turn(TurnRequest("a cat"))
    assert result.images[0].data == fake.image


async def test_a_synchronous_failure_is_a_task_failure(gmi: GmiProvider, fake: FakeGmi) -> None:
    fake.push("sync_failed")

    with pytest.raises(TaskFailed) as caught:
        await gmi.run_turn(TurnRequest("a cat"))

    assert caught.value.status == "failed"
    assert "content policy" in caught.value.message
    assert status_queries(fake) == []


async def test_a_result_that_is_not_an_image(gmi: GmiProvider, fake: FakeGmi) -> None:
    fake.push("not_image")
    with pytest.raises(ProviderBadResponse):
        await gmi.run_turn(TurnRequest("a cat"))


async def test_text_only_body(gmi: GmiProvider, fake: FakeGmi) -> None:
    await gmi.run_turn(TurnRequest("a cat", aspect_ratio="16:9"))

    assert fake.submits == [{
        "model": "gemini-3.1-flash-lite-image",
        "payload": {"prompt": "a cat", "aspect_ratio": "16:9", "image_output_format": "png"},
    }]


async def test_auto_aspect_ratio_sends_no_field(gmi: GmiProvider, fake: FakeGmi) -> None:
    await gmi.run_turn(TurnRequest("a cat", aspect_ratio=None))
    assert "aspect_ratio" not in fake.submits[0]["payload"]


async def test_references_travel_as_inline_data_parts(gmi: GmiProvider, fake: FakeGmi) -> None:
    png, jpeg = reference((1, 2, 3)), reference((200, 100, 0), "JPEG")

    await gmi.run_turn(TurnRequest("swap the colours", images=(png, jpeg)))

    payload = fake.submits[0]["payload"]
    assert "prompt" not in payload
    (turn,) = payload["contents"]
    assert turn["role"] == "user"
    text, *images = turn["parts"]
    assert text == {"text": "swap the colours"}
    assert [part["inlineData"]["mimeType"] for part in images] == ["image/png", "image/jpeg"]
    assert [base64.b64decode(part["inlineData"]["data"]) for part in images] == [
        png.data, jpeg.data,
    ]


async def test_check_credentials_lists_models(gmi: GmiProvider, fake: FakeGmi) -> None:
    await gmi.check_credentials()
    assert [(r.method, r.path) for r in fake.requests] == [("GET", f"{FakeGmi.prefix}/models")]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", TaskState.PENDING), ("dispatched", TaskState.PENDING),
        ("processing", TaskState.PENDING), ("running", TaskState.PENDING),
        ("success", TaskState.SUCCEEDED), ("succeeded", TaskState.SUCCEEDED),
        ("completed", TaskState.SUCCEEDED), ("finished", TaskState.SUCCEEDED),
        ("done", TaskState.SUCCEEDED), ("failed", TaskState.FAILED),
        ("error", TaskState.FAILED), ("failure", TaskState.FAILED),
        ("cancelled", TaskState.CANCELLED), ("canceled", TaskState.CANCELLED),
    ],
)
def test_status_variants(status: str, state: TaskState) -> None:
    assert parse_request({"request_id": "r1", "status": status}).state is state


@pytest.mark.parametrize("key", ["error", "message", "error_message", "detail"])
def test_failure_message_keys(key: str) -> None:
    snapshot = parse_request({"request_id": "r1", "status": "failed", key: "NSFW blocked"})
    assert snapshot.message == "NSFW blocked"


def test_failure_message_in_an_error_object() -> None:
    doc: dict[str, Any] = {"status": "failed", "error": {"message": "quota exceeded"}}
    assert parse_request(doc).message == "quota exceeded"


@pytest.mark.parametrize(
    "doc",
    [{"request_id": "r1", "status": "exploded"}, {"request_id": "r1"}, {"status": "queued"}, []],
    ids=["unknown status", "no status", "queued without id", "not an object"],
)
def test_unreadable_answers(doc: Any) -> None:
    with pytest.raises(ProviderBadResponse):
        parse_request(doc)
