"""APIMart-specific shapes: both submit envelopes, both `url` forms, idempotent submits,
error bodies inside and outside HTTP 200, the stated cost and the status variants."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.errors import ProviderAuthError, ProviderBadResponse, ProviderHTTPError
from bot.models import TurnRequest
from bot.providers.apimart import DEFAULT_BASE_URL, ApimartProvider, parse_submit, parse_task
from bot.providers.polling import TaskState
from tests.fakes.apimart import COST_USD, FakeApimart
from tests.fakes.upstream import RecordedRequest, decode_data_uri
from tests.provider_support import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, reference


@pytest.fixture
async def fake() -> AsyncIterator[FakeApimart]:
    server = FakeApimart()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def apimart(fake: FakeApimart) -> AsyncIterator[ApimartProvider]:
    async with aiohttp.ClientSession() as session:
        yield ApimartProvider(
            session, api_key=fake.api_key, base_url=fake.base_url, retry=FAST_RETRY,
            timeouts=FAST_TIMEOUTS, poll=FAST_POLL,
        )


def submits(fake: FakeApimart) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == "POST"]


def test_defaults_to_the_documented_base_url() -> None:
    assert DEFAULT_BASE_URL == "https://api.apimart.ai"


async def test_body_and_stated_cost(apimart: ApimartProvider, fake: FakeApimart) -> None:
    result = await apimart.run_turn(TurnRequest("a cat", aspect_ratio="16:9"))

    assert fake.submits == [{
        "model": "gemini-3.1-flash-lite-image", "prompt": "a cat", "size": "16:9",
        "resolution": "1K", "n": 1,
    }]
    assert result.usage.cost_usd == COST_USD
    assert result.usage.reported is False


async def test_auto_aspect_ratio_is_sent_as_auto(
    apimart: ApimartProvider, fake: FakeApimart
) -> None:
    await apimart.run_turn(TurnRequest("a cat"))
    assert fake.submits[0]["size"] == "auto"


async def test_references_are_data_uris(apimart: ApimartProvider, fake: FakeApimart) -> None:
    png, webp = reference((9, 9, 9)), reference((0, 90, 200), "WEBP")

    await apimart.run_turn(TurnRequest("blend them", images=(png, webp)))

    urls = fake.submits[0]["image_urls"]
    assert [url.split(",")[0] for url in urls] == [
        "data:image/png;base64", "data:image/webp;base64",
    ]
    assert [decode_data_uri(url) for url in urls] == [png.data, webp.data]


async def test_task_is_queried_in_english(apimart: ApimartProvider, fake: FakeApimart) -> None:
    await apimart.run_turn(TurnRequest("a cat"))

    (task_id,) = fake.tasks
    queries = [r for r in fake.requests if r.path == f"/v1/tasks/{task_id}"]
    assert len(queries) == 3  # pending, processing, completed
    assert all(r.query == {"language": "en"} for r in queries)


async def test_every_submit_is_idempotent(apimart: ApimartProvider, fake: FakeApimart) -> None:
    fake.push("unavailable")
    await apimart.run_turn(TurnRequest("first"))
    await apimart.run_turn(TurnRequest("second"))

    keys = [r.headers["Idempotency-Key"] for r in submits(fake)]
    assert keys[0] == keys[1] != keys[2]  # a retry reuses its turn's key; a new turn does not
    assert all(re.fullmatch(r"[!-~]{1,191}", key) for key in keys)
    assert {r.headers["X-APIMart-Response-Version"] for r in submits(fake)} == {"2026-07-27"}


async def test_a_lost_answer_is_retried_without_a_second_task(
    apimart: ApimartProvider, fake: FakeApimart
) -> None:
    fake.push("lost_response")

    result = await apimart.run_turn(TurnRequest("a cat"))

    assert result.images[0].data == fake.image
    assert len(fake.submits) == 2
    assert len(fake.tasks) == 1  # the retry was replayed, not billed again


@pytest.mark.parametrize("scenario", ["url_string", "v2"])
async def test_answer_variants(
    apimart: ApimartProvider, fake: FakeApimart, scenario: str
) -> None:
    fake.push(scenario)
    result = await apimart.run_turn(TurnRequest("a cat"))
    assert result.images[0].data == fake.image


@pytest.mark.parametrize(
    ("scenario", "status", "text"),
    [("error_body", 400, "could not be read"), ("error_in_200", 402, "insufficient balance")],
)
async def test_error_bodies(
    apimart: ApimartProvider, fake: FakeApimart, scenario: str, status: int, text: str
) -> None:
    fake.push(scenario)

    with pytest.raises(ProviderHTTPError) as caught:
        await apimart.run_turn(TurnRequest("a cat"))

    assert caught.value.status == status
    assert not caught.value.retryable
    assert text in caught.value.detail
    assert len(fake.submits) == 1


async def test_check_credentials_probes_a_task_that_cannot_exist(
    apimart: ApimartProvider, fake: FakeApimart
) -> None:
    await apimart.check_credentials()  # the fake answers 404: the key was accepted
    (probe,) = fake.requests
    assert (probe.method, probe.path.startswith("/v1/tasks/")) == ("GET", True)


def test_legacy_and_2026_submit_answers() -> None:
    legacy = {"code": 200, "data": [{"status": "submitted", "task_id": "task_01"}]}
    v2 = {"code": 200, "data": {"object": "generation.task", "id": "task_02",
                                "status": "pending"}}
    assert (parse_submit(legacy).task_id, parse_submit(legacy).state) == (
        "task_01", TaskState.PENDING)
    assert (parse_submit(v2).task_id, parse_submit(v2).state) == ("task_02", TaskState.PENDING)


def test_a_synchronous_2026_result() -> None:
    doc = {"code": 200, "data": {"object": "generation.result",
                                 "result": {"images": [{"url": ["https://x/a.png"]}]}}}
    snapshot = parse_submit(doc)
    assert (snapshot.state, snapshot.urls) == (TaskState.SUCCEEDED, ("https://x/a.png",))


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("submitted", TaskState.PENDING), ("pending", TaskState.PENDING),
        ("processing", TaskState.PENDING), ("in_progress", TaskState.PENDING),
        ("completed", TaskState.SUCCEEDED), ("success", TaskState.SUCCEEDED),
        ("succeeded", TaskState.SUCCEEDED), ("failed", TaskState.FAILED),
        ("cancelled", TaskState.CANCELLED),
    ],
)
def test_status_variants(status: str, state: TaskState) -> None:
    assert parse_task({"id": "task_01", "status": status}).state is state


def test_failed_task_message_and_urls_in_both_forms() -> None:
    failed = parse_task({"id": "t", "status": "failed",
                         "error": {"code": 400, "message": "policy", "type": "x"}})
    done = parse_task({"id": "t", "status": "completed", "cost": "0.02", "result": {
        "images": [{"url": "https://x/1.png"}, {"url": ["https://x/2.png", "https://x/3.png"]}]}})
    assert failed.message == "policy"
    assert done.urls == ("https://x/1.png", "https://x/2.png", "https://x/3.png")
    assert done.cost_usd == 0.02


@pytest.mark.parametrize(
    "doc",
    [{"code": 200, "data": []}, {"code": 200}, {"code": 200, "data": {"status": "pending"}}],
    ids=["no task", "no data", "pending without id"],
)
def test_unreadable_submit_answers(doc: dict[str, Any]) -> None:
    with pytest.raises(ProviderBadResponse):
        parse_submit(doc)


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"success": False, "message": "bad"}, ProviderHTTPError),
        ({"code": 401, "msg": "expired"}, ProviderAuthError),
        ({"error": {"code": "invalid_api_key", "message": "no", "type": "auth"}},
         ProviderHTTPError),
    ],
)
def test_errors_inside_a_200(
    apimart: ApimartProvider, doc: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        apimart._check_envelope(doc)
