"""A loopback fake of LinkModel's task API (specs/providers.md sections 4 and 6.4).

Routes under the real base path `/api/v1`: `POST /image-generation`,
`GET /query/image-generation?task_id=...`, plus `/files/<name>.png`.

Create answers `{"code":0,"data":{"task_id","order_id","status":"processing","price"},
"msg":"success","request_id"}`; queries answer with `message` instead of `msg`, and
capitalised statuses: `Pending`, `Processing`, then `Success` (results in
`output_images`), `Failed` (the reason in `data.msg`) or `Cancelled`. Errors are
`{"code":<status>,"msg":...}`; a request with a wrong key gets HTTP 401.

Extra scenarios:
- bad_key: HTTP 200 with `{"code":401,"msg":"token expired"}` (the CLI's fixture).
- code_error: HTTP 200 with `{"code":500,"msg":"create task failed: billing: code=100601:
  insufficient balance"}`.
- no_code: a create answer without `code`, which clients must treat as invalid.
- file_url: the finished task names its image in `file_url` instead of `output_images`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes.upstream import MODEL, FakeTask, FakeUpstream, RouteError, decode_data_uri

PRICE_USD = 0.074
SIZES = frozenset({"16x9", "1x1", "21x9", "2x3", "3x2", "3x4", "4x3", "4x5", "5x4", "9x16"})
INSUFFICIENT_BALANCE = "create task failed: billing: code=100601: insufficient balance"


def references_in(body: Mapping[str, Any]) -> list[bytes]:
    images = body.get("images")
    if images is None:
        return []
    if not isinstance(images, list) or not 1 <= len(images) <= 10:
        raise RouteError(400, "images must hold 1 to 10 URLs")
    found: list[bytes] = []
    for url in images:
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
            raise RouteError(400, "images must be URLs")
        data = decode_data_uri(url) if url.startswith("data:") else None
        if url.startswith("data:") and data is None:
            raise RouteError(400, "images: malformed data URI")
        if data is not None:
            found.append(data)
    return found


def _validate(body: Mapping[str, Any]) -> None:
    if body.get("model") != MODEL:
        raise RouteError(400, f"unknown model {body.get('model')!r}")
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        raise RouteError(400, "prompt is required")
    if body.get("quality", "1K") not in ("1K", "2K", "4K"):
        raise RouteError(400, "quality must be one of 1K, 2K, 4K")
    if "size" in body and body["size"] not in SIZES:
        raise RouteError(400, f"size {body['size']!r} is not supported")


class FakeLinkmodel(FakeUpstream):
    prefix = "/api/v1"
    progression = ("Pending", "Processing")

    def __init__(self, *, api_key: str = "test-linkmodel-key", image: bytes | None = None) -> None:
        super().__init__(api_key=api_key, image=image)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{self.prefix}/image-generation", self._create)
        router.add_get(f"{self.prefix}/query/image-generation", self._query)

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        body = {"code": status, "msg": message, "request_id": self.new_id()}
        return web.json_response(body, status=status, headers=headers)

    async def _create(self, request: web.Request) -> web.Response:
        body = await self.read_submit(request)
        scenario = self.next_scenario()
        if scenario == "bad_key":
            return self._business(401, "token expired")
        if scenario == "code_error":
            return self._business(500, INSUFFICIENT_BALANCE)
        await self.canned(scenario)
        _validate(body)
        references = references_in(body)
        self.require_edit(scenario, references)
        task = self.new_task(self.new_id(), scenario)
        data = {"task_id": task.id, "order_id": self.new_id(), "status": "processing",
                "price": PRICE_USD}
        answer: dict[str, Any] = {"data": data, "msg": "success", "request_id": self.new_id()}
        if scenario != "no_code":
            answer["code"] = 0
        return web.json_response(answer)

    async def _query(self, request: web.Request) -> web.Response:
        self.check_key(request)
        task = self.tasks.get(request.query.get("task_id", ""))
        if task is None:
            raise RouteError(404, "task not found")
        status = self.phase(task)
        data = {"task_id": task.id, "prompt": "", "status": status, "model": MODEL,
                "metadata": "", "msg": ""}
        if status is None:
            data.update(self._outcome(task))
        return web.json_response(
            {"code": 0, "data": data, "message": "success", "request_id": self.new_id()}
        )

    def _outcome(self, task: FakeTask) -> dict[str, Any]:
        if task.scenario == "task_failed":
            return {"status": "Failed", "msg": "content policy blocked the task"}
        if task.scenario == "task_cancelled":
            return {"status": "Cancelled", "msg": "task cancelled"}
        if task.scenario == "no_image":
            return {"status": "Success", "output_images": []}
        url = self.result_url(task)
        if task.scenario == "file_url":
            return {"status": "Success", "file_url": url}
        return {"status": "Success", "output_images": [url]}

    def _business(self, code: int, message: str) -> web.Response:
        """An error LinkModel reports inside an HTTP 200."""
        return web.json_response({"code": code, "msg": message, "request_id": self.new_id()})
