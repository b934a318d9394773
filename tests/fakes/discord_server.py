"""A loopback fake Discord for end-to-end tests with the real discord.py client.

One aiohttp server on 127.0.0.1 serves the REST API under ``/api/v10``, the
gateway websocket at ``/`` and an in-memory attachment CDN. Point discord.py at
it with::

    discord.http.Route.BASE = f"{fake.base_url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

See /work/shared/specs/discord.md for the wire details this follows.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.discord_models import (
    BOT_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    JSON,
    MIB,
    FakeAttachment,
    FakeInteraction,
    FakeMessage,
    FakeThread,
    FakeUser,
    RecordedRequest,
    iter_components,
    snowflake,
)
from tests.fakes.discord_rest import Fault, RestApi
from tests.fakes.discord_state import DiscordState, FakeChannel

__all__ = [
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeInteraction",
    "FakeMessage",
    "FakeThread",
    "FakeUser",
    "RecordedRequest",
]


@dataclass
class _OptionBuild:
    options: list[JSON] = field(default_factory=list)
    resolved: dict[str, dict[str, JSON]] = field(default_factory=dict)


class FakeDiscord(DiscordState):
    def __init__(
        self, *, token: str = "test-token", message_content_intent_allowed: bool = True
    ) -> None:
        super().__init__(token=token, message_content_intent_allowed=message_content_intent_allowed)
        self.faults: list[Fault] = []
        self.rest = RestApi(self)
        self._runner: web.AppRunner | None = None

    # ================================================================ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * MIB, middlewares=[self.rest.middleware])
        self.rest.register(app)
        app.router.add_get("/", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        await self.gateway.close_all(1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ================================================================ fault injection

    def inject_429(
        self,
        path_prefix: str,
        retry_after: float,
        *,
        count: int = 1,
        is_global: bool = False,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` REST requests under ``path_prefix`` with a 429.

        ``path_prefix`` is relative to ``/api/v10`` (e.g. ``"/webhooks/"``). The 429
        carries a ``Via`` header so discord.py retries instead of assuming a ban.
        """
        body: JSON = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        self.faults.append(Fault(path_prefix, method, 429, body, headers, count))

    def inject_fault(
        self,
        path_prefix: str,
        status: int,
        *,
        code: int = 0,
        message: str = "injected fault",
        count: int = 1,
        method: str | None = None,
    ) -> None:
        """The next ``count`` matching REST requests answer ``status`` with a Discord error body."""
        self.faults.append(
            Fault(path_prefix, method, status, {"message": message, "code": code}, {}, count)
        )

    async def gw_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client resumes on a new connection."""
        self.gateway.send_op({"op": 7, "d": None, "s": None, "t": None})

    async def gw_invalid_session(self, resumable: bool = False) -> None:
        if not resumable and self.gateway.current is not None:
            self.gateway.current.invalidated = True
        self.gateway.send_op({"op": 9, "d": resumable, "s": None, "t": None})

    async def gw_close(self, code: int = 4000) -> None:
        self.gateway.close_current(code)

    # ================================================================ driving the bot

    def _user(self, user: FakeUser | None) -> FakeUser:
        return user if user is not None else self.alice

    def _channel(self, channel_id: int | None) -> int:
        cid = channel_id if channel_id is not None else self.channel_id
        if not self.is_channel(cid):
            raise AssertionError(f"unknown channel or thread {cid}")
        return cid

    async def _interact(
        self,
        itype: int,
        data: JSON,
        user: FakeUser,
        channel_id: int,
        *,
        message: FakeMessage | None = None,
        parent: FakeInteraction | None = None,
    ) -> FakeInteraction:
        iid = snowflake()
        token = f"itok_{secrets.token_urlsafe(48)}"
        payload: JSON = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "data": data,
            "guild_id": str(self.guild_id),
            "guild": {"id": str(self.guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": self.interaction_channel_payload(channel_id, user),
            "member": user.member_payload(with_permissions=True),
            "app_permissions": str(BOT_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,
            "attachment_size_limit": self.filesize_limit,
        }
        if message is not None:
            payload["message"] = self.message_payload(message)
        inter = FakeInteraction(
            id=iid,
            token=token,
            type=itype,
            user=user,
            channel_id=channel_id,
            data=data,
            payload=payload,
            fake=self,
            message_id=message.id if message is not None else None,
            parent=parent,
        )
        self.interactions[iid] = inter
        inter.created_at = time.monotonic()
        await self._send_and_wait("INTERACTION_CREATE", payload)
        return inter

    def _find_command(self, name: str, cmd_type: int) -> tuple[JSON, bool]:
        cmd = self.guild_commands.get((name, cmd_type))
        if cmd is not None:
            return cmd, True
        cmd = self.global_commands.get((name, cmd_type))
        if cmd is not None:
            return cmd, False
        known = sorted(f"{n} (type {t})" for n, t in [*self.guild_commands, *self.global_commands])
        raise AssertionError(
            f"command {name!r} (type {cmd_type}) was never synced; synced: {known}"
        )

    def _resolve_user(self, build: _OptionBuild, user: FakeUser) -> None:
        build.resolved.setdefault("users", {})[str(user.id)] = user.user_payload()
        build.resolved.setdefault("members", {})[str(user.id)] = {
            **user.member_payload(with_user=False),
            "permissions": str(user.permissions),
        }

    def _option_value(self, build: _OptionBuild, opt: JSON, value: object) -> object:
        opt_type = int(opt["type"])
        name = opt["name"]
        bad = AssertionError(f"option {name!r} (type {opt_type}) cannot take {value!r}")
        if opt_type == 3:
            if not isinstance(value, str):
                raise bad
            return value
        if opt_type == 4:
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
            return value
        if opt_type == 5:
            if not isinstance(value, bool):
                raise bad
            return value
        if opt_type == 10:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad
            return value
        if opt_type in (6, 9) and isinstance(value, FakeUser):
            self._resolve_user(build, value)
            return str(value.id)
        if opt_type == 7 and isinstance(value, int) and self.is_channel(value):
            build.resolved.setdefault("channels", {})[str(value)] = {
                **self.channel_payload(value),
                "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
            }
            return str(value)
        if opt_type in (8, 9) and isinstance(value, int) and value in self.roles:
            build.resolved.setdefault("roles", {})[str(value)] = self.roles[value]
            return str(value)
        if opt_type == 11 and isinstance(value, dict) and "id" in value:
            att = self.attachment_from_dict(value)
            build.resolved.setdefault("attachments", {})[str(att.id)] = att.payload(self.base_url)
            return str(att.id)
        raise bad

    def _build_options(
        self, defs: list[JSON], values: dict[str, object], focused: str | None = None
    ) -> _OptionBuild:
        build = _OptionBuild()
        by_name = {d["name"]: d for d in defs}
        if focused is not None and focused not in by_name:
            raise AssertionError(
                f"unknown focused option {focused!r}; command has {sorted(by_name)}"
            )
        for name, value in values.items():
            if name not in by_name:
                raise AssertionError(f"unknown option {name!r}; command has {sorted(by_name)}")
            opt = by_name[name]
            if name == focused:
                # Autocomplete sends whatever the member has typed so far, as a string.
                wire: object = str(value)
                build.options.append(
                    {"name": name, "type": int(opt["type"]), "value": wire, "focused": True}
                )
                continue
            wire = self._option_value(build, opt, value)
            choices = opt.get("choices")
            if choices and wire not in [c["value"] for c in choices]:
                raise AssertionError(f"{wire!r} is not a choice of option {name!r}: {choices}")
            build.options.append({"name": name, "type": int(opt["type"]), "value": wire})
        if focused is None:
            missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
            if missing:
                raise AssertionError(f"required options missing: {missing}")
        elif focused not in values:
            build.options.append(
                {
                    "name": focused,
                    "type": int(by_name[focused]["type"]),
                    "value": "",
                    "focused": True,
                }
            )
        return build

    def _chat_input_data(
        self,
        name: str,
        options: dict[str, object] | None,
        subcommand: str | None,
        focused: str | None = None,
    ) -> JSON:
        cmd, is_guild = self._find_command(name, 1)
        defs: list[JSON] = list(cmd.get("options") or [])
        chain: list[JSON] = []
        for part in subcommand.split() if subcommand else []:
            sub = next((o for o in defs if o["name"] == part and o.get("type") in (1, 2)), None)
            if sub is None:
                raise AssertionError(f"/{name} has no subcommand or group {part!r}")
            chain.append(sub)
            defs = list(sub.get("options") or [])
        if any(d.get("type") in (1, 2) for d in defs):
            raise AssertionError(f"/{name} {subcommand or ''} needs a subcommand")
        build = self._build_options(defs, dict(options or {}), focused)
        top_options = build.options
        for sub in reversed(chain):
            top_options = [{"name": sub["name"], "type": sub["type"], "options": top_options}]
        data: JSON = {"id": cmd["id"], "name": name, "type": 1, "options": top_options}
        if is_guild:
            data["guild_id"] = str(self.guild_id)
        if build.resolved:
            data["resolved"] = build.resolved
        return data

    async def slash(
        self,
        name: str,
        options: dict[str, object] | None = None,
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
        subcommand: str | None = None,
    ) -> FakeInteraction:
        """Invoke a synced chat-input command. ``subcommand`` may be "sub" or "group sub".

        Option types come from the definitions the bot synced: str/int/bool/float as-is,
        a FakeUser for USER/MENTIONABLE, a dict from ``add_attachment`` for ATTACHMENT,
        a channel/thread id for CHANNEL, a role id for ROLE.
        """
        data = self._chat_input_data(name, options, subcommand)
        return await self._interact(2, data, self._user(user), self._channel(channel_id))

    async def autocomplete(
        self,
        name: str,
        options: dict[str, object] | None = None,
        *,
        focused: str,
        user: FakeUser | None = None,
        channel_id: int | None = None,
        subcommand: str | None = None,
    ) -> FakeInteraction:
        """Send an APPLICATION_COMMAND_AUTOCOMPLETE (type 4) with ``focused`` as the typed option.

        The bot's type-8 answer is in ``callbacks[0]["data"]["choices"]``.
        """
        data = self._chat_input_data(name, options, subcommand, focused)
        return await self._interact(4, data, self._user(user), self._channel(channel_id))

    async def message_command(
        self,
        name: str,
        target_message_id: int,
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
    ) -> FakeInteraction:
        cmd, is_guild = self._find_command(name, 3)
        target = self.messages.get(target_message_id)
        if target is None or target.deleted:
            raise AssertionError(f"no message {target_message_id}")
        data: JSON = {
            "id": cmd["id"],
            "name": name,
            "type": 3,
            "target_id": str(target.id),
            "resolved": {"messages": {str(target.id): self.message_payload(target)}},
        }
        if is_guild:
            data["guild_id"] = str(self.guild_id)
        cid = self._channel(channel_id if channel_id is not None else target.channel_id)
        return await self._interact(2, data, self._user(user), cid)

    async def user_command(
        self,
        name: str,
        target: FakeUser,
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
    ) -> FakeInteraction:
        cmd, is_guild = self._find_command(name, 2)
        build = _OptionBuild()
        self._resolve_user(build, target)
        data: JSON = {
            "id": cmd["id"],
            "name": name,
            "type": 2,
            "target_id": str(target.id),
            "resolved": build.resolved,
        }
        if is_guild:
            data["guild_id"] = str(self.guild_id)
        return await self._interact(2, data, self._user(user), self._channel(channel_id))

    async def click(
        self,
        message_id: int,
        custom_id: str,
        *,
        user: FakeUser | None = None,
        values: list[str] | None = None,
    ) -> FakeInteraction:
        """Click a button (or pick ``values`` in a select) on a stored message."""
        msg = self.messages.get(message_id)
        if msg is None or msg.deleted:
            raise AssertionError(f"no message {message_id}")
        comp = next(
            (c for c in iter_components(msg.components) if c.get("custom_id") == custom_id), None
        )
        if comp is None:
            raise AssertionError(
                f"message {message_id} has no component {custom_id!r}; has {msg.custom_ids}"
            )
        if comp.get("disabled"):
            raise AssertionError(f"component {custom_id!r} is disabled")
        data: JSON = {"custom_id": custom_id, "component_type": int(comp["type"])}
        if int(comp["type"]) in (3, 5, 6, 7, 8):
            data["values"] = list(values or [])
        elif values is not None:
            raise AssertionError(f"component {custom_id!r} is not a select")
        return await self._interact(3, data, self._user(user), msg.channel_id, message=msg)

    async def submit_modal(
        self,
        interaction: FakeInteraction,
        values: dict[str, str],
        *,
        user: FakeUser | None = None,
    ) -> FakeInteraction:
        """Submit the modal ``interaction`` was answered with.

        ``values`` maps text-input (or select) custom_ids to the submitted value.
        """
        modal = interaction.modal
        if modal is None:
            raise AssertionError(f"{interaction!r} was not answered with a modal (type 9)")
        remaining = dict(values)
        submitted: list[JSON] = []
        for top in modal.get("components") or []:
            inner = (
                [top["component"]] if top.get("type") == 18 else list(top.get("components") or [])
            )
            answers: list[JSON] = []
            for comp in inner:
                cid = comp.get("custom_id")
                if comp.get("type") == 4:
                    value = remaining.pop(cid, "")
                    if comp.get("required", True) and not value:
                        raise AssertionError(f"required text input {cid!r} left empty")
                    if len(value) > int(comp.get("max_length") or 4000) or len(value) < int(
                        comp.get("min_length") or 0
                    ):
                        raise AssertionError(f"value for {cid!r} violates its length limits")
                    answers.append(
                        {"type": 4, "id": comp.get("id", 0), "custom_id": cid, "value": value}
                    )
                elif comp.get("type") in (3, 5, 6, 7, 8) and cid is not None:
                    chosen = remaining.pop(cid, None)
                    answers.append(
                        {
                            "type": comp["type"],
                            "id": comp.get("id", 0),
                            "custom_id": cid,
                            "values": [chosen] if chosen is not None else [],
                        }
                    )
            if top.get("type") == 18:
                if answers:
                    submitted.append({"type": 18, "id": top.get("id", 0), "component": answers[0]})
            else:
                submitted.append({"type": 1, "id": top.get("id", 0), "components": answers})
        if remaining:
            raise AssertionError(f"modal has no inputs {sorted(remaining)}")
        data: JSON = {"custom_id": modal["custom_id"], "components": submitted}
        message = self.messages.get(interaction.message_id) if interaction.message_id else None
        return await self._interact(
            5,
            data,
            self._user(user if user is not None else interaction.user),
            interaction.channel_id,
            message=message,
            parent=interaction,
        )

    async def user_message(
        self,
        content: str,
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
        attachments: list[JSON] | None = None,
        reply_to: int | None = None,
        mention_bot: bool = False,
        ping_reply: bool = True,
    ) -> FakeMessage:
        """A member posts a message (MESSAGE_CREATE, redacted per §5.5 without the intent)."""
        author = self._user(user)
        cid = self._channel(channel_id)
        if mention_bot:
            content = f"<@{self.bot_user_id}> {content}".rstrip()
        reference: JSON | None = None
        reply_author: int | None = None
        if reply_to is not None:
            ref = self.messages.get(reply_to)
            if ref is None or ref.deleted:
                raise AssertionError(f"cannot reply to unknown message {reply_to}")
            reference = {
                "type": 0,
                "message_id": str(ref.id),
                "channel_id": str(ref.channel_id),
                "guild_id": str(self.guild_id),
            }
            reply_author = ref.author_id if ping_reply else None
        mentions, everyone = self._resolve_mentions(
            content, None, ("users", "roles", "everyone"), reply_author
        )
        msg = FakeMessage(
            id=snowflake(),
            channel_id=cid,
            guild_id=self.guild_id,
            author_id=author.id,
            content=content,
            files=[self.attachment_from_dict(a) for a in attachments or []],
            type=19 if reference is not None else 0,
            message_reference=reference,
            mention_ids=mentions,
            mention_everyone=everyone,
        )
        if not (msg.content or msg.files):
            raise AssertionError("a user message needs content or attachments")
        self._store_message(msg)
        await self._send_and_wait("MESSAGE_CREATE", self._redact(self.message_payload(msg), msg))
        return msg

    # ================================================================ waiting

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,
        *,
        what: str | None = None,
    ) -> None:
        """Poll ``predicate`` until it is true; AssertionError with recent traffic otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if predicate():
                return
            if loop.time() >= deadline:
                label = what or getattr(predicate, "__qualname__", repr(predicate))
                raise AssertionError(
                    f"condition not met within {timeout}s: {label}\n{self.describe()}"
                )
            await asyncio.sleep(0.01)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until a session has IDENTIFYed and its READY + GUILD_CREATE were written."""
        await self.wait_until(
            lambda: (
                self.gateway.connected
                and self.gateway.current is not None
                and self.gateway.current.ready
            ),
            timeout,
            what="bot IDENTIFY + READY/GUILD_CREATE",
        )

    def describe(self) -> str:
        """Human-readable summary of recent traffic, for assertion messages."""
        lines = [
            f"gateway: connected={self.gateway.connected} identifies={self.gateway.identify_count}"
            f" resumes={self.gateway.resume_count} close_codes={self.gateway.close_codes}",
            "last REST requests:",
        ]
        for r in self.requests[-15:]:
            body = "" if r.json is None else f" {str(r.json)[:160]}"
            lines.append(f"  {r.method} {r.path} -> {r.status}{body}")
        if self.internal_errors:
            lines.append(f"fake internal errors: {self.internal_errors[-3:]}")
        return "\n".join(lines)

    def requests_to(self, path_part: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if path_part in r.path and (method is None or r.method == method.upper())
        ]
