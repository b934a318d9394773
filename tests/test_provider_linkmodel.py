"""LinkModel-specific shapes: the `x` sizes, the two envelopes, capitalised statuses,
business errors inside HTTP 200, a missing code, `file_url` and the stated price."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderHTTPError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from bot.models import TurnRequest
from bot.providers.linkmodel import DEFAULT_BASE_URL, LinkmodelProvider, parse_task
from bot.providers.polling import TaskState
from tests.fakes.linkmodel import INSUFFICIENT_BALANCE, PRICE_USD, FakeLinkmodel
from tests.fakes.upstream import decode_data_uri
from tests.provider_support import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, reference


@pytest.fixture
async def fake() -> AsyncIterator[FakeLinkmodel]:
    server = FakeLinkmodel()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def linkmodel(fake: FakeLinkmodel) -> AsyncIterator[LinkmodelProvider]:
    async with aiohttp.ClientSession() as session:
        yield LinkmodelProvider(
            session, api_key=fake.api_key, base_url=fake.base_url, retry=FAST_RETRY,
            timeouts=FAST_TIMEOUTS, poll=FAST_POLL,
        )


def test_defaults_to_the_documented_base_url() -> None:
    assert DEFAULT_BASE_URL == "https://api.linkmodel.ai/api/v1"


async def test_body_queries_and_stated_price(
    linkmodel: LinkmodelProvider, fake: FakeLinkmodel
) -> None:
    result = await linkmodel.run_turn(TurnRequest("a cat", aspect_ratio="16:9"))

    assert fake.submits == [
        {"model": "gemini-3.1-flash-lite-image", "prompt": "a cat", "quality": "1K",
         "size": "16x9"},
    ]
    (task_id,) = fake.tasks
    queries = [r for r in fake.requests if r.path == "/api/v1/query/image-generation"]
    assert [r.query for r in queries] == [{"task_id": task_id}] * 3  # Pending, Processing, Success
    assert result.usage.cost_usd == PRICE_USD
    assert result.usage.reported is False


async def test_auto_aspect_ratio_sends_no_size(
    linkmodel: LinkmodelProvider, fake: FakeLinkmodel
) -> None:
    await linkmodel.run_turn(TurnRequest("a cat"))
    assert "size" not in fake.submits[0]


async def test_references_are_data_uris(linkmodel: LinkmodelProvider, fake: FakeLinkmodel) -> None:
    images = (reference((5, 5, 5)), reference((80, 0, 80), "JPEG"))

    await linkmodel.run_turn(TurnRequest("merge", images=images))

    assert [decode_data_uri(url) for url in fake.submits[0]["images"]] == [
        image.data for image in images
    ]


async def test_file_url_result(linkmodel: LinkmodelProvider, fake: FakeLinkmodel) -> None:
    fake.push("file_url")
    result = await linkmodel.run_turn(TurnRequest("a cat"))
    assert result.images[0].data == fake.image


async def test_a_business_error_inside_200_is_final(
    linkmodel: LinkmodelProvider, fake: FakeLinkmodel
) -> None:
    fake.push("code_error")

    with pytest.raises(ProviderHTTPError) as caught:
        await linkmodel.run_turn(TurnRequest("a cat"))

    assert not isinstance(caught.value, ProviderUnavailable)
    assert caught.value.status == 500
    assert INSUFFICIENT_BALANCE in caught.value.detail
    assert len(fake.submits) == 1


async def test_token_expired_inside_200_is_an_auth_error(
    linkmodel: LinkmodelProvider, fake: FakeLinkmodel
) -> None:
    fake.push("bad_key")

    with pytest.raises(ProviderAuthError) as caught:
        await linkmodel.run_turn(TurnRequest("a cat"))

    assert "token expired" in caught.value.detail


async def test_a_missing_code_is_invalid(linkmodel: LinkmodelProvider, fake: FakeLinkmodel) -> None:
    fake.push("no_code")

    with pytest.raises(ProviderBadResponse):
        await linkmodel.run_turn(TurnRequest("a cat"))

    assert len(fake.submits) == 1


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"code": 401, "msg": "token expired"}, ProviderAuthError),
        ({"code": 429, "msg": "slow down"}, ProviderRateLimited),
        ({"code": 500, "message": INSUFFICIENT_BALANCE}, ProviderHTTPError),
        ({"msg": "success", "data": {}}, ProviderBadResponse),
        ({"code": "0", "data": {}}, ProviderBadResponse),
    ],
)
def test_envelope_codes(
    linkmodel: LinkmodelProvider, doc: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        linkmodel._check_envelope(doc)
    assert type(caught.value) is error


def test_capitalised_statuses_and_failure_text() -> None:
    def state(status: str, **extra: Any) -> Any:
        return parse_task({"code": 0, "data": {"task_id": "t", "status": status, **extra}})

    assert state("processing").state is TaskState.PENDING  # create's lowercase form
    assert state("Pending").state is TaskState.PENDING
    assert state("Success", output_images=["https://x/1.png"]).urls == ("https://x/1.png",)
    assert state("Cancelled").state is TaskState.CANCELLED
    failed = state("Failed", msg="content policy blocked the task")
    assert (failed.state, failed.message) == (TaskState.FAILED, "content policy blocked the task")
    with pytest.raises(ProviderBadResponse):
        state("Exploded")
