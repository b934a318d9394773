"""Data model, constants and validation for the loopback fake Discord.

Everything here is plain data: the wire payload builders that need the whole
fake's state live in ``discord_server``; the REST handlers in ``discord_rest``;
the gateway in ``discord_gateway``.
"""

from __future__ import annotations

import datetime
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import discord
import orjson

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

JSON = dict[str, Any]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
MIB = 1024 * 1024
MAX_REQUEST_BYTES = 25 * MIB
MAX_CONTENT = 2000
MAX_FILES = 10

# --- permission bits (https://discord.com/developers/docs/topics/permissions) ---
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38

ALL_PERMISSIONS: int = discord.Permissions.all().value
DEFAULT_MEMBER_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS | MANAGE_MESSAGES | MANAGE_THREADS

# --- gateway intents ---
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_GUILD_MESSAGE_TYPING = 1 << 11
INTENT_MESSAGE_CONTENT = 1 << 15

# --- message flags ---
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15

THREAD_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)


class _Snowflakes:
    """Time-based, strictly increasing snowflakes (shared by every fake in the process)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


_SNOWFLAKES = _Snowflakes()


def snowflake() -> int:
    return _SNOWFLAKES.next()


def iso_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def json_dumps(data: object) -> str:
    # orjson: the fakes share the benchmark machine's cores with the bot being measured.
    return orjson.dumps(data).decode()


class ApiError(Exception):
    """Raised by handlers; rendered as a Discord error body."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> JSON:
        out: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def form_error(path: list[str | int], code: str, message: str) -> ApiError:
    """A 400/50035 "Invalid Form Body" with the nested ``errors`` Discord uses."""
    leaf: JSON = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        leaf = {str(key): leaf}
    return ApiError(400, 50035, "Invalid Form Body", leaf)


@dataclass
class RecordedRequest:
    """One REST request the fake received. ``path`` is relative to ``/api/v10``."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[tuple[str, str, str, bytes]]
    headers: dict[str, str]
    status: int | None = None

    @property
    def body_size(self) -> int:
        return sum(len(f[3]) for f in self.files)


@dataclass(eq=False)
class FakeUser:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    permissions: int = DEFAULT_MEMBER_PERMISSIONS
    role_ids: list[int] = field(default_factory=list)
    joined_at: str = field(default_factory=iso_now)
    nick: str | None = None

    @property
    def name(self) -> str:
        return self.username

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def user_payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }

    def member_payload(self, *, with_user: bool = True, with_permissions: bool = False) -> JSON:
        out: JSON = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            out["user"] = self.user_payload()
        if with_permissions:
            out["permissions"] = str(self.permissions)
        return out

    def __repr__(self) -> str:
        return f"FakeUser(id={self.id}, username={self.username!r})"


@dataclass(eq=False)
class FakeAttachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None
    channel_id: int
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    signature: str = field(default_factory=lambda: secrets.token_hex(16))

    def cdn_path(self) -> str:
        return f"/attachments/{self.channel_id}/{self.id}/{quote(self.filename)}"

    def payload(self, base_url: str) -> JSON:
        expires = format(int(time.time()) + 86400, "x")
        issued = format(int(time.time()), "x")
        query = f"?ex={expires}&is={issued}&hm={self.signature}&"
        out: JSON = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": f"{base_url}{self.cdn_path()}{query}",
            "proxy_url": f"{base_url}/media-proxy{self.cdn_path()}{query}",
        }
        if self.content_type is not None:
            out["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            out["width"] = self.width
            out["height"] = self.height
        if self.description is not None:
            out["description"] = self.description
        if self.ephemeral:
            out["ephemeral"] = True
        return out


@dataclass(eq=False)
class FakeMessage:
    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    files: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    allowed_mentions: JSON | None = None
    message_reference: JSON | None = None
    mention_ids: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    deleted: bool = False
    interaction_id: int | None = None
    webhook_id: int | None = None
    tts: bool = False
    nonce: str | int | None = None
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    thread_id: int | None = None
    reactions: list[str] = field(default_factory=list)
    pinned: bool = False
    edits: int = 0

    @property
    def attachments(self) -> list[tuple[str, bytes]]:
        """``(filename, bytes)`` of every attachment currently on the message."""
        return [(a.filename, a.data) for a in self.files]

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    @property
    def custom_ids(self) -> list[str]:
        """custom_id of every component on the message (buttons, selects, ...)."""
        return [c["custom_id"] for c in iter_components(self.components) if "custom_id" in c]

    def __repr__(self) -> str:
        return (
            f"FakeMessage(id={self.id}, channel_id={self.channel_id}, author_id={self.author_id}, "
            f"content={self.content[:60]!r}, files={[a.filename for a in self.files]}, "
            f"flags={self.flags}, deleted={self.deleted})"
        )


@dataclass(eq=False)
class FakeThread:
    id: int
    parent_id: int
    guild_id: int
    name: str
    owner_id: int
    type: int = 11
    auto_archive_duration: int = 1440
    archived: bool = False
    locked: bool = False
    rate_limit_per_user: int = 0
    created_at: str = field(default_factory=iso_now)
    message_ids: list[int] = field(default_factory=list)
    member_ids: list[int] = field(default_factory=list)

    def payload(self, *, member_for: int | None = None) -> JSON:
        out: JSON = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "parent_id": str(self.parent_id),
            "owner_id": str(self.owner_id),
            "name": self.name,
            "last_message_id": str(self.message_ids[-1]) if self.message_ids else None,
            "message_count": len(self.message_ids),
            "total_message_sent": len(self.message_ids),
            "member_count": len(self.member_ids),
            "rate_limit_per_user": self.rate_limit_per_user,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": self.archived,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": self.created_at,
                "locked": self.locked,
                "invitable": True,
                "create_timestamp": self.created_at,
            },
        }
        if member_for is not None and member_for in self.member_ids:
            out["member"] = {
                "id": str(self.id),
                "user_id": str(member_for),
                "join_timestamp": self.created_at,
                "flags": 1,
            }
        return out


@dataclass(eq=False)
class FakeInteraction:
    id: int
    token: str
    type: int
    user: FakeUser
    channel_id: int
    data: JSON
    payload: JSON
    fake: FakeDiscord
    message_id: int | None = None  # the message a component / modal-from-component is on
    parent: FakeInteraction | None = None  # the interaction a modal submit answers
    callbacks: list[JSON] = field(default_factory=list)
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    modal: JSON | None = None
    created_at: float = field(default_factory=time.monotonic)
    acknowledged_at: float | None = None
    response_type: int | None = None
    ack_missed: bool = False

    @property
    def ack_latency(self) -> float | None:
        if self.acknowledged_at is None:
            return None
        return self.acknowledged_at - self.created_at

    @property
    def ephemeral(self) -> bool:
        if not self.callbacks:
            return False
        data = self.callbacks[0].get("data") or {}
        return bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)

    @property
    def deferred(self) -> bool:
        return self.response_type in (5, 6)

    def original_message(self) -> FakeMessage | None:
        if self.original_message_id is None:
            return None
        return self.fake.messages.get(self.original_message_id)

    def messages(self) -> list[FakeMessage]:
        """The original response (if any) and every followup, in their current state."""
        ids: list[int] = []
        if self.original_message_id is not None:
            ids.append(self.original_message_id)
        ids.extend(i for i in self.followup_ids if i not in ids)
        return [self.fake.messages[i] for i in ids if i in self.fake.messages]

    def __repr__(self) -> str:
        return (
            f"FakeInteraction(id={self.id}, type={self.type}, user={self.user.username!r}, "
            f"response_type={self.response_type}, callbacks={len(self.callbacks)}, "
            f"followups={len(self.followup_ids)})"
        )


def iter_components(components: list[JSON]) -> list[JSON]:
    """Flatten action rows, containers, sections and labels into leaf-and-parent list."""
    out: list[JSON] = []
    stack = list(reversed(components))
    while stack:
        comp = stack.pop()
        out.append(comp)
        children: list[JSON] = []
        children.extend(comp.get("components") or [])
        if isinstance(comp.get("component"), dict):
            children.append(comp["component"])
        if isinstance(comp.get("accessory"), dict):
            children.append(comp["accessory"])
        stack.extend(reversed(children))
    return out


# --------------------------------------------------------------------------- validation


def _check_len(value: object, path: list[str | int], low: int, high: int) -> None:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise form_error(
            path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."
        )


def validate_embeds(embeds: object) -> list[JSON]:
    if embeds is None:
        return []
    if not isinstance(embeds, list):
        raise form_error(
            ["embeds"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
        )
    if len(embeds) > 10:
        raise form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    limits = {"title": 256, "description": 4096}
    for i, embed in enumerate(embeds):
        for key, high in limits.items():
            value = embed.get(key)
            if value is not None:
                if len(value) > high:
                    raise form_error(
                        ["embeds", i, key],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {high} or fewer in length.",
                    )
                total += len(value)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise form_error(
                ["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for j, fld in enumerate(fields):
            _check_len(fld.get("name"), ["embeds", i, "fields", j, "name"], 1, 256)
            _check_len(fld.get("value"), ["embeds", i, "fields", j, "value"], 1, 1024)
            total += len(fld["name"]) + len(fld["value"])
        footer = (embed.get("footer") or {}).get("text")
        if footer is not None:
            _check_len(footer, ["embeds", i, "footer", "text"], 0, 2048)
            total += len(footer)
        author = (embed.get("author") or {}).get("name")
        if author is not None:
            _check_len(author, ["embeds", i, "author", "name"], 0, 256)
            total += len(author)
    if total > 6000:
        raise form_error(
            ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    return embeds


def validate_components(components: object) -> list[JSON]:
    if components is None:
        return []
    if not isinstance(components, list):
        raise form_error(["components"], "LIST_TYPE_CONVERT", "Only iterables may be used")
    flat = iter_components(components)
    if len(flat) > 40:
        raise form_error(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in length.")
    for i, row in enumerate(components):
        if row.get("type") == 1 and len(row.get("components") or []) > 5:
            raise form_error(
                ["components", i, "components"],
                "BASE_TYPE_MAX_LENGTH",
                "Must be 5 or fewer in length.",
            )
    for comp in flat:
        if "custom_id" in comp:
            _check_len(comp["custom_id"], ["components", "custom_id"], 1, 100)
        if comp.get("type") == 2 and comp.get("label") is not None:
            _check_len(comp["label"], ["components", "label"], 0, 80)
    return components


def validate_modal(data: JSON) -> None:
    _check_len(data.get("custom_id"), ["data", "custom_id"], 1, 100)
    _check_len(data.get("title"), ["data", "title"], 1, 45)
    comps = data.get("components")
    if not isinstance(comps, list) or not 1 <= len(comps) <= 5:
        raise form_error(
            ["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
        )
    for comp in iter_components(comps):
        if comp.get("type") == 4:
            _check_len(comp.get("custom_id"), ["data", "components", "custom_id"], 1, 100)
            if comp.get("max_length") is not None and comp["max_length"] > 4000:
                raise form_error(
                    ["data", "components", "max_length"],
                    "NUMBER_TYPE_MAX",
                    "int value should be less than or equal to 4000.",
                )


def _valid_command_name(name: object, *, chat_input: bool) -> bool:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return False
    if not chat_input:
        return True
    return name == name.lower() and all(c.isalnum() or c in "-_'" for c in name)


def _command_size(cmd: JSON) -> int:
    size = len(cmd.get("name") or "") + len(cmd.get("description") or "")
    for opt in cmd.get("options") or []:
        size += _command_size(opt)
        for choice in opt.get("choices") or []:
            size += len(str(choice.get("name"))) + len(str(choice.get("value")))
    return size


def _validate_options(options: object, path: list[str | int]) -> None:
    if options is None:
        return
    if not isinstance(options, list):
        raise form_error(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(options) > 25:
        raise form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    names: set[str] = set()
    for i, opt in enumerate(options):
        here = [*path, i]
        if not _valid_command_name(opt.get("name"), chat_input=True):
            raise form_error(
                [*here, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        if opt["name"] in names:
            raise form_error(
                [*here, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option name already exists",
            )
        names.add(opt["name"])
        _check_len(opt.get("description"), [*here, "description"], 1, 100)
        opt_type = opt.get("type")
        if opt_type in (1, 2):
            _validate_options(opt.get("options"), [*here, "options"])
            continue
        if opt.get("required"):
            if seen_optional:
                raise form_error(
                    [*here, "required"],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(opt.get("choices") or []) > 25:
            raise form_error(
                [*here, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )


def validate_commands(commands: object) -> None:
    """Raise ``ApiError`` (400/50035) for a bulk-overwrite body Discord would reject."""
    if not isinstance(commands, list):
        raise form_error([], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    seen: set[tuple[str, int]] = set()
    counts: dict[int, int] = {}
    for i, cmd in enumerate(commands):
        cmd_type = int(cmd.get("type", 1))
        counts[cmd_type] = counts.get(cmd_type, 0) + 1
        chat_input = cmd_type == 1
        if not _valid_command_name(cmd.get("name"), chat_input=chat_input):
            raise form_error(
                [i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        key = (cmd["name"], cmd_type)
        if key in seen:
            raise form_error(
                [i, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {cmd['name']}",
            )
        seen.add(key)
        if chat_input:
            _check_len(cmd.get("description"), [i, "description"], 1, 100)
            _validate_options(cmd.get("options"), [i, "options"])
            if _command_size(cmd) > 8000:
                raise form_error(
                    [i], "APPLICATION_COMMAND_TOO_LARGE", "Command exceeds maximum size (8000)"
                )
        elif cmd.get("options"):
            raise form_error(
                [i, "options"], "BASE_TYPE_MAX_LENGTH", "Context menus take no options"
            )
    if counts.get(1, 0) > 100 or counts.get(2, 0) > 15 or counts.get(3, 0) > 15:
        raise form_error([], "BASE_TYPE_MAX_LENGTH", "Too many application commands")
