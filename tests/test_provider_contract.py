"""One contract every image provider keeps, run against each route's loopback fake.

Each case drives a real adapter over real HTTP to a fake that speaks the route's wire
format (tests/fakes/), so a case fails when an adapter misreads its route, not when a mock
disagrees with itself. Routes differ only in the `Route` row: how to build the fake and
the adapter, how to find the reference images in a submit body, and which scenario
stands for a safety block or an answer without an image.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import pytest
from multidict import CIMultiDict

from bot.errors import (
    ContentBlocked,
    NoImageReturned,
    ProviderAuthError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    TaskFailed,
)
from bot.models import TurnRequest
from bot.providers.apimart import ApimartProvider
from bot.providers.base import ImageProvider
from bot.providers.gemini import GeminiProvider
from bot.providers.gmi import GmiProvider
from bot.providers.http import Timeouts
from bot.providers.linkmodel import LinkmodelProvider
from bot.providers.polling import PollSchedule
from tests.fakes import apimart as fake_apimart
from tests.fakes import gmi as fake_gmi
from tests.fakes import linkmodel as fake_linkmodel
from tests.fakes.gemini import FakeGemini
from tests.provider_support import (
    FAST_POLL,
    FAST_RETRY,
    FAST_TIMEOUTS,
    HANG_TIMEOUTS,
    SHORT_DEADLINE,
    WRONG_KEY,
    assert_secret_free,
    reference,
)


class Recorded(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> Mapping[str, str]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def json(self) -> Any: ...


class Fake(Protocol):
    api_key: str
    image: bytes

    @property
    def base_url(self) -> str: ...
    @property
    def requests(self) -> Sequence[Recorded]: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def push(self, *scenarios: str) -> None: ...


MakeProvider = Callable[[aiohttp.ClientSession, str, str, Timeouts, PollSchedule], ImageProvider]


@dataclass(frozen=True)
class Route:
    name: str
    fake: Callable[[], Fake]
    provider: MakeProvider
    #: The parsed bodies of every generation request the fake received, answered or not.
    submits: Callable[[Any], list[dict[str, Any]]]
    #: The reference images a submit body carries, decoded.
    references: Callable[[dict[str, Any]], list[bytes]]
    #: The scenario standing for a safety block, and the error it must raise.
    block: tuple[str, type[ProviderError]]
    #: The header that carries the key, and its value given the key.
    auth_header: tuple[str, str]
    #: The task routes poll, and their tasks can be cancelled or never finish.
    polls: bool
    #: A scenario that also makes the fake insist on receiving references, if it has one.
    edit: str | None
    #: Set the fake up for the contract, e.g. to echo keys into its errors.
    prepare: Callable[[Any], None] = lambda fake: None


TaskProviderClass = type[GmiProvider | ApimartProvider | LinkmodelProvider]


def _task_route(
    name: str, fake: Callable[[], Fake], cls: TaskProviderClass,
    references: Callable[[dict[str, Any]], list[bytes]],
) -> Route:
    def make(session: aiohttp.ClientSession, base_url: str, key: str, timeouts: Timeouts,
             poll: PollSchedule) -> ImageProvider:
        return cls(session, api_key=key, base_url=base_url, retry=FAST_RETRY,
                   timeouts=timeouts, poll=poll)

    # The task fakes echo a presented key into their auth errors, always.
    return Route(
        name, fake, make, lambda fake: fake.submits, references, ("task_failed", TaskFailed),
        ("Authorization", "Bearer {key}"), polls=True, edit="edit",
    )


def _gemini_provider(session: aiohttp.ClientSession, base_url: str, key: str,
                     timeouts: Timeouts, poll: PollSchedule) -> ImageProvider:
    return GeminiProvider(session, api_key=key, base_url=base_url, retry=FAST_RETRY,
                          timeouts=timeouts)


def _gemini_references(submit: dict[str, Any]) -> list[bytes]:
    """inlineData parts of a native generateContent body (camelCase or snake_case)."""
    found = []
    for content in submit.get("contents", []):
        for part in content.get("parts", []):
            blob = part.get("inlineData") or part.get("inline_data")
            if blob:
                found.append(base64.b64decode(blob["data"]))
    return found


def _echo_keys(fake: FakeGemini) -> None:
    fake.echo_key = True


ROUTES = [
    Route(
        "gemini", FakeGemini, _gemini_provider,
        lambda fake: [sent.json for sent in fake.requests], _gemini_references,
        ("image_safety", ContentBlocked), ("x-goog-api-key", "{key}"), polls=False, edit=None,
        prepare=_echo_keys,
    ),
    _task_route("gmi", fake_gmi.FakeGmi, GmiProvider,
                lambda submit: fake_gmi.references_in(submit["payload"])),
    _task_route("apimart", fake_apimart.FakeApimart, ApimartProvider,
                fake_apimart.references_in),
    _task_route("linkmodel", fake_linkmodel.FakeLinkmodel, LinkmodelProvider,
                fake_linkmodel.references_in),
]
TASK_ROUTES = [route for route in ROUTES if route.polls]


@pytest.fixture(params=ROUTES, ids=lambda route: route.name)
def route(request: pytest.FixtureRequest) -> Route:
    route: Route = request.param
    return route


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def fake(route: Route) -> AsyncIterator[Fake]:
    server = route.fake()
    route.prepare(server)
    await server.start()
    yield server
    await server.close()


def adapter(
    route: Route, session: aiohttp.ClientSession, fake: Fake, *, key: str | None = None,
    timeouts: Timeouts = FAST_TIMEOUTS, poll: PollSchedule = FAST_POLL,
) -> ImageProvider:
    return route.provider(session, fake.base_url, key or fake.api_key, timeouts, poll)


PROMPT = TurnRequest(prompt="a lighthouse at dusk, watercolour", aspect_ratio="16:9")


async def failure(provider: ImageProvider, fake: Fake, request: TurnRequest = PROMPT,
                  ) -> ProviderError:
    """Run a turn that must fail; check the error keeps every key out of its text."""
    with pytest.raises(ProviderError) as caught:
        await provider.run_turn(request)
    assert_secret_free(caught.value, fake.api_key, WRONG_KEY)
    return caught.value


async def test_declares_what_it_is(route: Route, session: aiohttp.ClientSession,
                                   fake: Fake) -> None:
    provider = adapter(route, session, fake)
    assert isinstance(provider, ImageProvider)
    assert provider.name == route.name
    assert provider.model == "gemini-3.1-flash-lite-image"
    assert provider.capabilities.max_images_per_request == 1


async def test_success_returns_the_exact_image_with_usage(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    result = await adapter(route, session, fake).run_turn(PROMPT)

    assert [image.data for image in result.images] == [fake.image]
    assert result.images[0].mime == "image/png"
    assert result.usage.output_image_tokens >= 1120
    assert result.usage.input_tokens > 0
    assert len(route.submits(fake)) == 1


async def test_the_key_travels_only_in_its_header(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    await adapter(route, session, fake).run_turn(PROMPT)

    header, value = route.auth_header
    for sent in fake.requests:
        headers = CIMultiDict(sent.headers)
        assert fake.api_key not in sent.path
        assert fake.api_key not in str(sent.query)
        if sent.path.startswith("/files/"):
            assert header not in headers  # result downloads never carry the key
        else:
            assert headers[header] == value.format(key=fake.api_key)


async def test_edit_sends_every_reference_image(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    first, second = reference((10, 200, 30)), reference((250, 250, 0), "JPEG")
    if route.edit:
        fake.push(route.edit)
    request = TurnRequest(prompt="make the sky green", images=(first, second))

    result = await adapter(route, session, fake).run_turn(request)

    assert result.images[0].data == fake.image
    assert route.references(route.submits(fake)[-1]) == [first.data, second.data]


async def test_wrong_key_is_an_auth_error_everywhere(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    provider = adapter(route, session, fake, key=WRONG_KEY)

    error = await failure(provider, fake)
    assert isinstance(error, ProviderAuthError)
    assert len(route.submits(fake)) == 1  # never retried
    with pytest.raises(ProviderAuthError) as caught:
        await provider.check_credentials()
    assert_secret_free(caught.value, WRONG_KEY, fake.api_key)


async def test_revoked_key_is_an_auth_error(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.push("bad_key")

    error = await failure(adapter(route, session, fake), fake)

    assert isinstance(error, ProviderAuthError)
    assert len(route.submits(fake)) == 1


async def test_check_credentials_accepts_a_good_key_for_free(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    await adapter(route, session, fake).check_credentials()
    assert route.submits(fake) == []


async def test_check_credentials_shrugs_off_network_trouble(
    route: Route, session: aiohttp.ClientSession, fake: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on the discard port: start-up must go on, with a warning.
    unreachable = route.provider(session, "http://127.0.0.1:9", fake.api_key, HANG_TIMEOUTS,
                                 FAST_POLL)

    await unreachable.check_credentials()

    assert "could not check credentials" in caplog.text


async def test_rate_limit_with_hint_is_retried(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.push("rate_limited", "success")

    result = await adapter(route, session, fake).run_turn(PROMPT)

    assert result.images[0].data == fake.image
    assert len(route.submits(fake)) == 2


async def test_unavailable_once_is_retried(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.push("unavailable")

    result = await adapter(route, session, fake).run_turn(PROMPT)

    assert result.images[0].data == fake.image
    assert len(route.submits(fake)) == 2


async def test_unavailable_forever_gives_up_after_three_attempts(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.push("unavailable", "unavailable", "unavailable", "unavailable")

    error = await failure(adapter(route, session, fake), fake)

    assert isinstance(error, ProviderUnavailable)
    assert len(route.submits(fake)) == 3


async def test_a_server_that_never_answers_times_out(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.push("hang", "hang", "hang")

    error = await failure(adapter(route, session, fake, timeouts=HANG_TIMEOUTS), fake)

    assert isinstance(error, ProviderTimeout)
    assert len(route.submits(fake)) == 3


async def test_a_safety_block_is_reported_not_retried(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    scenario, expected = route.block
    fake.push(scenario)

    error = await failure(adapter(route, session, fake), fake)

    assert isinstance(error, expected)
    assert "block" in error.user_message.lower()
    assert len(route.submits(fake)) == 1


async def test_an_answer_without_an_image(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.push("no_image")

    error = await failure(adapter(route, session, fake), fake)

    assert isinstance(error, NoImageReturned)


@pytest.mark.parametrize("route", TASK_ROUTES, ids=lambda route: route.name, indirect=True)
async def test_a_cancelled_task(route: Route, session: aiohttp.ClientSession,
                                fake: Fake) -> None:
    fake.push("task_cancelled")

    error = await failure(adapter(route, session, fake), fake)

    assert isinstance(error, TaskFailed)
    assert error.status.lower().startswith("cancel")
    assert "cancelled" in error.user_message


@pytest.mark.parametrize("route", TASK_ROUTES, ids=lambda route: route.name, indirect=True)
async def test_a_task_that_never_finishes_hits_the_poll_deadline(
    route: Route, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.push("never_finishes")

    error = await failure(adapter(route, session, fake, poll=SHORT_DEADLINE), fake)

    assert isinstance(error, ProviderTimeout)
    assert "still" in error.detail
    assert len(route.submits(fake)) == 1
