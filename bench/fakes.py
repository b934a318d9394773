"""The loopback fakes as the load benchmark uses them.

- `noise_png`: a result image of a chosen size (PNG of noise does not compress);
- `BenchDiscord`: the test suite's fake Discord, timestamping each job's result at the fake;
- `BenchGemini`: the fake Gemini answering every call with one pre-encoded image answer.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image, ImageChops

from tests.fakes.discord_models import FakeMessage
from tests.fakes.discord_rest import REQUEST_ARRIVED
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeGemini

WARNING_PREFIX = "⚠️"
CLEANUP_DELAY = 2.0  # seconds a finished job's bytes stay in the fakes before being dropped


# ---------------------------------------------------------------------------- the result image


def noise_png(target_bytes: int, edge: int) -> bytes:
    """A gradient-plus-noise PNG of `edge`² pixels, about `target_bytes` long.

    PNG cannot compress noise, so the noise amplitude sets the size; it is found by bisection.
    """
    raw = os.urandom(edge * edge * 3)
    gradient = Image.linear_gradient("L").resize((edge, edge)).convert("RGB")

    def encode(amplitude: int) -> bytes:
        table = bytes(b * amplitude // 256 for b in range(256))
        noise = Image.frombytes("RGB", (edge, edge), raw.translate(table))
        out = io.BytesIO()
        ImageChops.add(gradient, noise).save(out, format="PNG")
        return out.getvalue()

    low, high = 1, 256
    best = encode(high)
    while low < high:
        middle = (low + high) // 2
        candidate = encode(middle)
        if abs(len(candidate) - target_bytes) < abs(len(best) - target_bytes):
            best = candidate
        if len(candidate) < target_bytes:
            low = middle + 1
        else:
            high = middle
    return best


# ---------------------------------------------------------------------------- fake Discord


@dataclass
class JobTimes:
    created: float
    acknowledged: float | None
    done: float
    error: str | None = None
    sending: float | None = None  # the request that carried the result arrived (headers)


class BenchDiscord(FakeDiscord):
    """The fake Discord, noting when each interaction's result (or refusal) arrives.

    Finished jobs' uploads are dropped after a moment, so a long run does not keep
    gigabytes of result images in this process.
    """

    def __init__(self) -> None:
        super().__init__()
        self.finished: dict[int, JobTimes] = {}
        self._waiters: dict[int, asyncio.Future[None]] = {}

    def edit_message(self, msg: FakeMessage, body: Any, uploads: Any) -> None:
        super().edit_message(msg, body, uploads)
        self._observe(msg)

    def create_message(self, **kwargs: Any) -> FakeMessage:
        msg = super().create_message(**kwargs)
        self._observe(msg)
        return msg

    def _observe(self, msg: FakeMessage) -> None:
        iid = msg.interaction_id
        if iid is None or iid in self.finished or iid not in self.interactions:
            return
        error = None
        if not msg.files:
            if not msg.content.startswith(WARNING_PREFIX):
                return  # a status edit ("Generating...")
            error = msg.content
        interaction = self.interactions[iid]
        self.finished[iid] = JobTimes(
            interaction.created_at, interaction.acknowledged_at, time.monotonic(), error,
            REQUEST_ARRIVED.get(None),
        )
        waiter = self._waiters.pop(iid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        asyncio.get_running_loop().call_later(CLEANUP_DELAY, self._forget, iid, msg)

    def _forget(self, iid: int, msg: FakeMessage) -> None:
        for attachment in msg.files:
            self.attachments.pop(attachment.id, None)
        msg.files = []
        self.messages.pop(msg.id, None)
        self.interactions.pop(iid, None)  # the fake finds webhooks by a scan of these

    async def result(self, iid: int, timeout: float) -> None:
        if iid in self.finished:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[iid] = waiter
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            self._waiters.pop(iid, None)


# ---------------------------------------------------------------------------- fake Gemini


class BenchGemini(FakeGemini):
    """The fake Gemini answering every call with the same pre-encoded image answer.

    The bot's side of the exchange is unchanged (a full 2 MB generateContent body to
    decode); the fake just skips validating each request and JSON-encoding each answer,
    which cost it about 6 ms of CPU a call on the machine the bot is being measured on.
    """

    def __init__(self, *, image: bytes) -> None:
        super().__init__(image=image)
        prompt = {"TEXT": 12, "IMAGE": 0}
        self._body = json.dumps(self._success(prompt, [self._image_part()])).encode()
        # Job number (the "study N" in its prompt) -> (request read, answer written).
        self.calls: dict[int, tuple[float, float]] = {}

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        arrived = time.monotonic()
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.headers.get("x-goog-api-key") != self.api_key:
            return web.json_response({"error": {"code": 403, "status": "PERMISSION_DENIED"}},
                                     status=403)
        response = web.Response(body=self._body, content_type="application/json")
        await response.prepare(request)
        await response.write_eof()
        number = _study_number(body)
        if number is not None:
            self.calls[number] = (arrived, time.monotonic())
        return response


def _study_number(body: bytes) -> int | None:
    """The N of "study N" in a bench prompt, found without parsing the JSON."""
    at = body.find(b"study ")
    if at < 0:
        return None
    end = at + 6
    while end < len(body) and body[end : end + 1] in b"-0123456789":
        end += 1
    try:
        return int(body[at + 6 : end])
    except ValueError:
        return None
