"""REST API and attachment CDN of the loopback fake Discord."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from tests.fakes.discord_models import (
    API_PREFIX,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    JSON,
    MAX_REQUEST_BYTES,
    ApiError,
    FakeInteraction,
    FakeMessage,
    RecordedRequest,
    form_error,
    iso_now,
    json_dumps,
    snowflake,
    validate_commands,
    validate_modal,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

log = logging.getLogger("tests.fakes.discord_rest")

# When the request being handled arrived (its headers read, before its body): the load
# benchmark splits a result's time into the bot's side and the upload's.
REQUEST_ARRIVED: contextvars.ContextVar[float] = contextvars.ContextVar("request_arrived")

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _boundary_of(content_type: str) -> str:
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise ApiError(400, 50035, "multipart body without a boundary")
    return found.group(1)


def split_multipart(
    body: bytes, boundary: str
) -> list[tuple[str, str | None, str, bytes]]:
    """The parts of a multipart/form-data body: name, filename, content type, bytes.

    Found with bytes.find and cut once each: aiohttp's part reader scans for the boundary
    in Python and parses headers with the email package, which made the fake the busiest
    process in the load benchmark.
    """
    delimiter = b"\r\n--" + boundary.encode()
    parts: list[tuple[str, str | None, str, bytes]] = []
    if not body.startswith(delimiter[2:]):
        return parts
    position = len(delimiter) - 2
    while not body.startswith(b"--", position):
        head_end = body.find(b"\r\n\r\n", position)
        end = body.find(delimiter, head_end + 4) if head_end != -1 else -1
        if end == -1:
            raise ApiError(400, 50035, "malformed multipart part")
        name, filename, ctype = "", None, "application/octet-stream"
        for line in body[position:head_end].decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                params = dict(_DISPOSITION_PARAM.findall(value))
                name, filename = params.get("name", ""), params.get("filename")
            elif key.strip().lower() == "content-type":
                ctype = value.strip()
        parts.append((name, filename, ctype, body[head_end + 4:end]))
        position = end + len(delimiter)
    return parts

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Typed request-storage key (aiohttp >= 3.13); a plain string on older aiohttp.
_REC: Any = (
    web.RequestKey("fake_discord_request", RecordedRequest)
    if hasattr(web, "RequestKey")
    else "fake_discord_request"
)
INTERACTION_FLAGS = (
    FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
)


@dataclass
class Fault:
    path_prefix: str
    method: str | None
    status: int
    body: JSON
    headers: dict[str, str]
    remaining: int


def json_response(data: object, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py's json_or_text compares the header verbatim.
    return web.Response(
        body=json_dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def _snowflake_param(request: web.Request, key: str) -> int:
    try:
        return int(request.match_info[key])
    except (KeyError, ValueError):
        raise ApiError(404, 0, "404: Not Found") from None


class RestApi:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    # ------------------------------------------------------------------ plumbing

    def register(self, app: web.Application) -> None:
        r = app.router
        p = API_PREFIX
        r.add_get(f"{p}/users/@me", self.get_me)
        r.add_get(f"{p}/users/{{user_id}}", self.get_user)
        r.add_get(f"{p}/oauth2/applications/@me", self.get_application)
        r.add_get(f"{p}/applications/@me", self.get_application)
        r.add_get(f"{p}/gateway", self.get_gateway)
        r.add_get(f"{p}/gateway/bot", self.get_gateway_bot)
        r.add_route("*", f"{p}/applications/{{app_id}}/commands", self.commands)
        r.add_route("*", f"{p}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self.commands)
        r.add_get(f"{p}/guilds/{{guild_id}}", self.get_guild)
        r.add_get(f"{p}/guilds/{{guild_id}}/channels", self.get_guild_channels)
        r.add_get(f"{p}/guilds/{{guild_id}}/threads/active", self.get_active_threads)
        r.add_get(f"{p}/guilds/{{guild_id}}/members/{{user_id}}", self.get_member)
        r.add_post(f"{p}/interactions/{{iid}}/{{token}}/callback", self.interaction_callback)
        r.add_post(f"{p}/webhooks/{{app_id}}/{{token}}", self.webhook_execute)
        r.add_route(
            "*", f"{p}/webhooks/{{app_id}}/{{token}}/messages/{{mid}}", self.webhook_message
        )
        r.add_get(f"{p}/channels/{{cid}}", self.get_channel)
        r.add_route("*", f"{p}/channels/{{cid}}/messages", self.channel_messages)
        r.add_route("*", f"{p}/channels/{{cid}}/messages/{{mid}}", self.channel_message)
        r.add_post(f"{p}/channels/{{cid}}/typing", self.typing)
        r.add_post(f"{p}/channels/{{cid}}/messages/{{mid}}/threads", self.thread_from_message)
        r.add_post(f"{p}/channels/{{cid}}/threads", self.thread_without_message)
        r.add_route(
            "*", f"{p}/channels/{{cid}}/messages/{{mid}}/reactions/{{emoji}}/@me", self.reaction
        )
        r.add_get("/attachments/{cid}/{aid}/{filename}", self.cdn)
        r.add_get("/media-proxy/attachments/{cid}/{aid}/{filename}", self.cdn)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        REQUEST_ARRIVED.set(time.monotonic())
        rel = request.path[len(API_PREFIX) :]
        rec = RecordedRequest(
            method=request.method,
            path=rel,
            query=dict(request.query),
            json=None,
            files=[],
            headers=dict(request.headers),
        )
        self.fake.requests.append(rec)
        request[_REC] = rec
        try:
            size = await self._read_body(request, rec)
            fault = self._take_fault(request.method, rel)
            if fault is not None:
                resp = json_response(fault.body, fault.status)
                resp.headers.update(fault.headers)
            else:
                if size > MAX_REQUEST_BYTES:
                    raise ApiError(413, 40005, "Request entity too large")
                self._check_auth(request, rel)
                resp = await handler(request)  # type: ignore[assignment]
        except ApiError as exc:
            resp = json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            resp = json_response({"message": f"{exc.status}: {exc.reason}", "code": 0}, exc.status)
        except Exception:
            tb = traceback.format_exc()
            log.error("fake discord internal error on %s %s\n%s", request.method, rel, tb)
            self.fake.internal_errors.append(tb)
            resp = json_response({"message": "fake discord internal error", "code": 0}, 400)
        rec.status = resp.status
        return resp

    async def _read_body(self, request: web.Request, rec: RecordedRequest) -> int:
        if not request.can_read_body:
            return 0
        raw = await request.read()
        content_type = request.headers.get(hdrs.CONTENT_TYPE, "")  # aiohttp's parser is slow
        if content_type.startswith("multipart/"):
            boundary = _boundary_of(content_type)
            size = 0
            for name, filename, ctype, data in split_multipart(raw, boundary):
                size += len(data)
                if name == "payload_json":
                    rec.json = self._parse_json(data)
                elif filename is not None:
                    rec.files.append((name, filename, ctype, data))
            return size
        if raw:
            rec.json = self._parse_json(raw)
        return len(raw)

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _take_fault(self, method: str, rel: str) -> Fault | None:
        for fault in self.fake.faults:
            if (
                fault.remaining > 0
                and rel.startswith(fault.path_prefix)
                and (fault.method is None or fault.method.upper() == method)
            ):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.fake.faults.remove(fault)
                return fault
        return None

    def _check_auth(self, request: web.Request, rel: str) -> None:
        if rel.startswith(("/webhooks/", "/interactions/")):
            return
        if request.headers.get("Authorization") != f"Bot {self.fake.token}":
            raise ApiError(401, 0, "401: Unauthorized")

    @staticmethod
    def _body(request: web.Request) -> JSON:
        body = request[_REC].json
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, 50035, "Invalid Form Body")
        return body

    @staticmethod
    def _uploads(request: web.Request) -> list[tuple[str, str, str, bytes]]:
        rec: RecordedRequest = request[_REC]
        return list(rec.files)

    def _check_guild(self, request: web.Request) -> None:
        if _snowflake_param(request, "guild_id") != self.fake.guild_id:
            raise ApiError(403, 50001, "Missing Access")

    # ------------------------------------------------------------------ startup routes

    async def get_me(self, request: web.Request) -> web.Response:
        bot = self.fake.bot_user.user_payload()
        return json_response(
            {**bot, "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}
        )

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.fake.users.get(_snowflake_param(request, "user_id"))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(user.user_payload())

    async def get_application(self, request: web.Request) -> web.Response:
        fake = self.fake
        flags = (
            (1 << 19) if fake.message_content_intent_allowed else 0
        )  # GATEWAY_MESSAGE_CONTENT_LIMITED
        return json_response(
            {
                "id": str(fake.application_id),
                "name": "Peel (fake)",
                "description": "",
                "icon": None,
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": fake.owner.user_payload(),
                "team": None,
                "verify_key": "00" * 32,
                "flags": flags,
                "bot": fake.bot_user.user_payload(),
                "rpc_origins": [],
                "redirect_uris": [],
                "tags": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "terms_of_service_url": None,
                "privacy_policy_url": None,
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
                "integration_types_config": {"0": {}},
                "approximate_guild_count": 1,
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.fake.gateway_url.rstrip("/")})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.fake.gateway_url.rstrip("/"),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def commands(self, request: web.Request) -> web.Response:
        fake = self.fake
        if _snowflake_param(request, "app_id") != fake.application_id:
            raise ApiError(403, 50001, "Missing Access")
        is_guild = "guild_id" in request.match_info
        if is_guild:
            self._check_guild(request)
        store = fake.guild_commands if is_guild else fake.global_commands
        if request.method == "GET":
            return json_response(list(store.values()))
        if request.method != "PUT":
            raise ApiError(405, 0, "405: Method Not Allowed")
        body = request[_REC].json
        validate_commands(body)
        old = dict(store)
        store.clear()
        for cmd in body:
            cmd_type = int(cmd.get("type", 1))
            key = (cmd["name"], cmd_type)
            echoed: JSON = {
                **cmd,
                "id": str(fake.command_id(cmd["name"], cmd_type, is_guild)),
                "application_id": str(fake.application_id),
                "version": str(snowflake()),
                "type": cmd_type,
                "description": cmd.get("description") or "",
                "default_member_permissions": cmd.get("default_member_permissions"),
                "dm_permission": cmd.get("dm_permission", True),
                "nsfw": bool(cmd.get("nsfw", False)),
                "contexts": cmd.get("contexts"),
                "integration_types": cmd.get("integration_types") or [0],
                "name_localizations": cmd.get("name_localizations"),
                "description_localizations": cmd.get("description_localizations"),
            }
            if is_guild:
                echoed["guild_id"] = str(fake.guild_id)
            prev = old.get(key)
            if prev is not None and {k: v for k, v in prev.items() if k != "version"} == {
                k: v for k, v in echoed.items() if k != "version"
            }:
                echoed["version"] = prev["version"]
            store[key] = echoed
        return json_response(list(store.values()))

    async def get_guild(self, request: web.Request) -> web.Response:
        self._check_guild(request)
        data = self.fake.guild_create_payload(0)
        for key in (
            "members",
            "channels",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
            "unavailable",
            "member_count",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
        ):
            data.pop(key, None)
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        self._check_guild(request)
        return json_response([self.fake.channel_payload(c) for c in self.fake.channels])

    async def get_active_threads(self, request: web.Request) -> web.Response:
        self._check_guild(request)
        fake = self.fake
        threads = [t for t in fake.threads.values() if not t.archived]
        return json_response(
            {
                "threads": [t.payload() for t in threads],
                "members": [
                    t.payload(member_for=fake.bot_user_id)["member"]
                    for t in threads
                    if fake.bot_user_id in t.member_ids
                ],
            }
        )

    async def get_member(self, request: web.Request) -> web.Response:
        self._check_guild(request)
        user = self.fake.users.get(_snowflake_param(request, "user_id"))
        if user is None:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(user.member_payload())

    # ------------------------------------------------------------------ interactions

    async def interaction_callback(self, request: web.Request) -> web.Response:
        fake = self.fake
        inter = fake.interactions.get(_snowflake_param(request, "iid"))
        if inter is None or inter.token != request.match_info["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        now = time.monotonic()
        if inter.ack_missed or now - inter.created_at > fake.ack_deadline:
            inter.ack_missed = True
            raise ApiError(404, 10062, "Unknown interaction")
        if inter.acknowledged_at is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = self._body(request)
        cb_type = int(body.get("type", 0))
        data: JSON = body.get("data") or {}
        allowed = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}.get(inter.type, set())
        if cb_type not in allowed or (cb_type in (6, 7) and inter.message_id is None):
            raise form_error(
                ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
            )
        uploads = self._uploads(request)
        message: FakeMessage | None = None
        msg_type = 0
        if inter.type == 2:
            msg_type = 23 if inter.data.get("type") in (2, 3) else 20
        if cb_type == 4:
            message = fake.create_message(
                channel_id=inter.channel_id,
                author_id=fake.bot_user_id,
                body=data,
                uploads=uploads,
                msg_type=msg_type,
                interaction=inter,
                allowed_flags=INTERACTION_FLAGS,
                default_parse=("users",),
            )
        elif cb_type == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = fake.create_message(
                channel_id=inter.channel_id,
                author_id=fake.bot_user_id,
                body={"flags": flags},
                uploads=[],
                msg_type=msg_type,
                interaction=inter,
                allowed_flags=FLAG_LOADING | FLAG_EPHEMERAL,
                allow_empty=True,
                default_parse=("users",),
            )
        elif cb_type == 7:
            message = fake.messages.get(inter.message_id or 0)
            if message is None or message.deleted:
                raise ApiError(404, 10008, "Unknown Message")
            fake.edit_message(message, data, uploads)
        elif cb_type == 9:
            validate_modal(data)
        elif cb_type == 8 and len(data.get("choices") or []) > 25:
            raise form_error(
                ["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        inter.callbacks.append(body)
        inter.acknowledged_at = now
        inter.response_type = cb_type
        if cb_type == 9:
            inter.modal = data
        elif cb_type in (6, 7):
            inter.original_message_id = inter.message_id
        elif message is not None:
            inter.original_message_id = message.id
        if message is not None:
            fake.dispatch_message("MESSAGE_UPDATE" if cb_type == 7 else "MESSAGE_CREATE", message)
        response_id = inter.original_message_id if cb_type != 9 else None
        response_msg = fake.messages.get(response_id) if response_id else None
        out: JSON = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.type,
                "response_message_loading": cb_type == 5,
                "response_message_ephemeral": bool(response_msg and response_msg.ephemeral),
            }
        }
        if response_id is not None:
            out["interaction"]["response_message_id"] = str(response_id)
        if cb_type in (4, 7) and message is not None:
            out["resource"] = {"type": cb_type, "message": fake.message_payload(message)}
        elif cb_type in (5, 6):
            out["resource"] = {"type": cb_type}
        return json_response(out)

    def _webhook_interaction(self, request: web.Request) -> FakeInteraction:
        fake = self.fake
        token = request.match_info["token"]
        inter = next((i for i in fake.interactions.values() if i.token == token), None)
        if _snowflake_param(request, "app_id") != fake.application_id or inter is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        if time.monotonic() - inter.created_at > fake.token_ttl:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if inter.acknowledged_at is None or inter.ack_missed:
            raise ApiError(404, 10015, "Unknown Webhook")
        return inter

    async def webhook_execute(self, request: web.Request) -> web.Response:
        fake = self.fake
        inter = self._webhook_interaction(request)
        body = self._body(request)
        uploads = self._uploads(request)
        original = inter.original_message()
        if inter.response_type == 5 and original is not None and original.loading:
            # The first followup after a deferred response edits the loading message.
            edit = {
                k: v
                for k, v in body.items()
                if k in ("content", "embeds", "components", "attachments", "allowed_mentions")
            }
            fake.edit_message(original, edit, uploads)
            message = original
            fake.dispatch_message("MESSAGE_UPDATE", message)
        else:
            message = fake.create_message(
                channel_id=inter.channel_id,
                author_id=fake.bot_user_id,
                body=body,
                uploads=uploads,
                msg_type=0,
                interaction=inter,
                allowed_flags=INTERACTION_FLAGS,
                default_parse=("users",),
            )
            inter.followup_ids.append(message.id)
            fake.dispatch_message("MESSAGE_CREATE", message)
        if request.query.get("wait", "").lower() in ("0", "false"):
            return no_content()
        return json_response(fake.message_payload(message))

    async def webhook_message(self, request: web.Request) -> web.Response:
        fake = self.fake
        inter = self._webhook_interaction(request)
        raw_id = request.match_info["mid"]
        if raw_id == "@original":
            mid = inter.original_message_id
        else:
            mid = _snowflake_param(request, "mid")
            if mid != inter.original_message_id and mid not in inter.followup_ids:
                mid = None
        message = fake.messages.get(mid) if mid is not None else None
        if message is None or message.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(fake.message_payload(message))
        if request.method == "DELETE":
            fake.delete_message(message)
            return no_content()
        if request.method != "PATCH":
            raise ApiError(405, 0, "405: Method Not Allowed")
        fake.edit_message(message, self._body(request), self._uploads(request))
        fake.dispatch_message("MESSAGE_UPDATE", message)
        return json_response(fake.message_payload(message))

    # ------------------------------------------------------------------ channels

    def _channel_id(self, request: web.Request) -> int:
        cid = _snowflake_param(request, "cid")
        if not self.fake.is_channel(cid):
            raise ApiError(404, 10003, "Unknown Channel")
        return cid

    def _message(self, request: web.Request, cid: int) -> FakeMessage:
        msg = self.fake.messages.get(_snowflake_param(request, "mid"))
        if msg is None or msg.deleted or msg.channel_id != cid or msg.ephemeral:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(self.fake.channel_payload(self._channel_id(request)))

    async def channel_messages(self, request: web.Request) -> web.Response:
        fake = self.fake
        cid = self._channel_id(request)
        if request.method == "GET":
            visible = [m for m in fake.channel_messages(cid) if not m.ephemeral]
            q = request.query
            if "before" in q:
                visible = [m for m in visible if m.id < int(q["before"])]
            if "after" in q:
                visible = [m for m in visible if m.id > int(q["after"])]
            limit = max(1, min(100, int(q.get("limit", "50"))))
            if "after" in q:
                chosen = visible[:limit]
            else:
                chosen = visible[-limit:]
            chosen.sort(key=lambda m: m.id, reverse=True)
            return json_response([fake.message_payload(m) for m in chosen])
        if request.method != "POST":
            raise ApiError(405, 0, "405: Method Not Allowed")
        thread = fake.threads.get(cid)
        if thread is not None and thread.locked:
            raise ApiError(400, 160005, "Thread is locked")
        if thread is not None and thread.archived:
            thread.archived = False  # sending unarchives a non-locked thread
        message = fake.create_message(
            channel_id=cid,
            author_id=fake.bot_user_id,
            body=self._body(request),
            uploads=self._uploads(request),
        )
        fake.dispatch_message("MESSAGE_CREATE", message)
        return json_response(fake.message_payload(message))

    async def channel_message(self, request: web.Request) -> web.Response:
        fake = self.fake
        cid = self._channel_id(request)
        message = self._message(request, cid)
        if request.method == "GET":
            return json_response(fake.message_payload(message))
        if request.method == "DELETE":
            fake.delete_message(message)
            return no_content()
        if request.method != "PATCH":
            raise ApiError(405, 0, "405: Method Not Allowed")
        body = self._body(request)
        if message.author_id != fake.bot_user_id and set(body) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        fake.edit_message(message, body, self._uploads(request))
        fake.dispatch_message("MESSAGE_UPDATE", message)
        return json_response(fake.message_payload(message))

    async def typing(self, request: web.Request) -> web.Response:
        self._channel_id(request)
        return no_content()

    async def thread_from_message(self, request: web.Request) -> web.Response:
        fake = self.fake
        cid = _snowflake_param(request, "cid")
        thread = fake.create_thread(
            cid, self._body(request), message_id=_snowflake_param(request, "mid")
        )
        return json_response(thread.payload(member_for=fake.bot_user_id))

    async def thread_without_message(self, request: web.Request) -> web.Response:
        fake = self.fake
        thread = fake.create_thread(_snowflake_param(request, "cid"), self._body(request))
        return json_response(thread.payload(member_for=fake.bot_user_id))

    async def reaction(self, request: web.Request) -> web.Response:
        cid = self._channel_id(request)
        message = self._message(request, cid)
        emoji = request.match_info["emoji"]
        if request.method == "PUT":
            if emoji not in message.reactions:
                message.reactions.append(emoji)
        elif request.method == "DELETE":
            if emoji in message.reactions:
                message.reactions.remove(emoji)
        else:
            raise ApiError(405, 0, "405: Method Not Allowed")
        return no_content()

    # ------------------------------------------------------------------ CDN

    async def cdn(self, request: web.Request) -> web.Response:
        fake = self.fake
        fake.cdn_requests.append(request.path)
        try:
            aid = int(request.match_info["aid"])
        except ValueError:
            aid = -1
        att = fake.attachments.get(aid)
        if att is None or aid in fake.expired_attachment_ids:
            return web.Response(
                status=404, text="This content is no longer available.", content_type="text/plain"
            )
        return web.Response(
            body=att.data,
            headers={
                "Content-Type": att.content_type or "application/octet-stream",
                "Last-Modified": iso_now(),
            },
        )
