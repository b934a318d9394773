"""State, wire payloads and message/thread operations of the loopback fake Discord.

``DiscordState`` owns the guild model (users, roles, channels, threads, messages,
interactions, CDN attachments, synced commands) and builds every payload the
real client parses. ``discord_server.FakeDiscord`` adds the server, the test
drivers and fault injection on top.
"""

from __future__ import annotations

import asyncio
import io
import mimetypes
import re
from dataclasses import dataclass

from tests.fakes.discord_gateway import GatewayHub, GatewaySession
from tests.fakes.discord_models import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    FLAG_COMPONENTS_V2,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    INTENT_GUILD_PRESENCES,
    INTENT_MESSAGE_CONTENT,
    JSON,
    MAX_CONTENT,
    MAX_FILES,
    MIB,
    THREAD_ARCHIVE_DURATIONS,
    ApiError,
    FakeAttachment,
    FakeInteraction,
    FakeMessage,
    FakeThread,
    FakeUser,
    RecordedRequest,
    form_error,
    iso_now,
    snowflake,
    validate_components,
    validate_embeds,
)

UploadedFile = tuple[str, str, str, bytes]  # (field name, filename, content type, bytes)
_MENTION_RE = re.compile(r"<@!?(\d+)>")
_FILE_FIELD_RE = re.compile(r"files\[(\d+)\]")


@dataclass(eq=False)
class FakeChannel:
    id: int
    name: str
    position: int = 0
    type: int = 0
    topic: str | None = None
    last_message_id: int | None = None
    default_auto_archive_duration: int = 1440


class DiscordState:
    def __init__(
        self, *, token: str = "test-token", message_content_intent_allowed: bool = True
    ) -> None:
        self.token = token
        self.message_content_intent_allowed = message_content_intent_allowed
        self.members_intent_allowed = True
        self.presences_intent_allowed = True
        self.token_ttl: float = 900.0
        self.ack_deadline: float = 3.0
        self.premium_tier: int = 0
        self.port: int = 0

        self.application_id: int = snowflake()
        self.bot_user_id: int = self.application_id
        self.guild_id: int = snowflake()
        self.guild_name = "Peel Test Guild"

        self.requests: list[RecordedRequest] = []
        self.cdn_requests: list[str] = []
        self.internal_errors: list[str] = []  # tracebacks of bugs inside the fake itself
        self.users: dict[int, FakeUser] = {}
        self.roles: dict[int, JSON] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.threads: dict[int, FakeThread] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.expired_attachment_ids: set[int] = set()
        self.global_commands: dict[tuple[str, int], JSON] = {}
        self.guild_commands: dict[tuple[str, int], JSON] = {}
        self._command_ids: dict[tuple[str, int, bool], int] = {}
        self._nonces: dict[tuple[int, str], int] = {}
        self.gateway = GatewayHub(self)

        self._add_role(self.guild_id, "@everyone", DEFAULT_MEMBER_PERMISSIONS, position=0)
        bot_role = self._add_role(snowflake(), "Peel", BOT_PERMISSIONS, position=1, managed=True)
        admin_role = self._add_role(
            snowflake(), "Admin", ALL_PERMISSIONS | ADMINISTRATOR, position=2
        )
        self.bot_user = self._add_user(
            "peel",
            bot=True,
            permissions=BOT_PERMISSIONS,
            roles=[bot_role],
            user_id=self.application_id,
        )
        self.owner = self._add_user("owner", permissions=ALL_PERMISSIONS, roles=[admin_role])
        self.alice = self._add_user("alice")
        self.bob = self._add_user("bob")
        self.channel_id: int = self.add_text_channel("general", announce=False)

    # ================================================================ URLs

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    # ================================================================ guild model

    def _add_role(
        self, role_id: int, name: str, permissions: int, *, position: int, managed: bool = False
    ) -> int:
        role: JSON = {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(permissions),
            "managed": managed,
            "mentionable": False,
            "flags": 0,
        }
        if managed:
            role["tags"] = {"bot_id": str(self.application_id)}
        self.roles[role_id] = role
        return role_id

    def _add_user(
        self,
        name: str,
        *,
        bot: bool = False,
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        roles: list[int] | None = None,
        user_id: int | None = None,
    ) -> FakeUser:
        user = FakeUser(
            id=user_id if user_id is not None else snowflake(),
            username=name,
            global_name=None if bot else name.capitalize(),
            bot=bot,
            permissions=permissions,
            role_ids=list(roles or []),
        )
        self.users[user.id] = user
        return user

    def add_member(self, name: str, permissions: int = DEFAULT_MEMBER_PERMISSIONS) -> FakeUser:
        """Add a guild member. Non-default permissions are granted through a dedicated role."""
        roles: list[int] = []
        if permissions != DEFAULT_MEMBER_PERMISSIONS:
            role_id = self._add_role(
                snowflake(), f"{name}-role", permissions, position=len(self.roles)
            )
            roles.append(role_id)
            self._dispatch(
                "GUILD_ROLE_CREATE", {"guild_id": str(self.guild_id), "role": self.roles[role_id]}
            )
        user = self._add_user(name, permissions=permissions, roles=roles)
        self._dispatch(
            "GUILD_MEMBER_ADD", {**user.member_payload(), "guild_id": str(self.guild_id)}
        )
        return user

    def add_text_channel(self, name: str, *, announce: bool = True) -> int:
        channel = FakeChannel(id=snowflake(), name=name, position=len(self.channels))
        self.channels[channel.id] = channel
        if announce:
            self._dispatch("CHANNEL_CREATE", self.channel_payload(channel.id))
        return channel.id

    @property
    def filesize_limit(self) -> int:
        return {2: 50 * MIB, 3: 100 * MIB}.get(self.premium_tier, 10 * MIB)

    @property
    def commands(self) -> dict[str, JSON]:
        """Synced command definitions by name (guild commands shadow global ones)."""
        out = {name: cmd for (name, _), cmd in self.global_commands.items()}
        out.update({name: cmd for (name, _), cmd in self.guild_commands.items()})
        return out

    def command_id(self, name: str, cmd_type: int, guild: bool) -> int:
        key = (name, cmd_type, guild)
        if key not in self._command_ids:
            self._command_ids[key] = snowflake()
        return self._command_ids[key]

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        """Non-deleted messages in a channel or thread, oldest first (ephemeral ones included)."""
        return sorted(
            (m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted),
            key=lambda m: m.id,
        )

    def is_channel(self, channel_id: int) -> bool:
        return channel_id in self.channels or channel_id in self.threads

    # ================================================================ CDN

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        channel_id: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> JSON:
        """Put bytes on the fake CDN; returns the Discord attachment object for them."""
        att = FakeAttachment(
            id=snowflake(),
            filename=filename,
            data=data,
            content_type=content_type,
            channel_id=channel_id or self.channel_id,
            width=width,
            height=height,
        )
        self.attachments[att.id] = att
        return att.payload(self.base_url)

    def expire_cdn(self) -> None:
        """Every attachment URL issued so far now answers 404."""
        self.expired_attachment_ids.update(self.attachments)

    def attachment_from_dict(self, obj: JSON) -> FakeAttachment:
        att = self.attachments.get(int(obj["id"]))
        if att is None:
            raise AssertionError(f"attachment {obj.get('id')} was not created by add_attachment")
        return att

    def _register_upload(
        self, upload: UploadedFile, meta: JSON, channel_id: int, ephemeral: bool
    ) -> FakeAttachment:
        _, part_filename, part_type, data = upload
        filename = str(meta.get("filename") or part_filename)
        content_type = mimetypes.guess_type(filename)[0]
        if content_type is None and part_type not in ("", "application/octet-stream"):
            content_type = part_type
        width = height = None
        if content_type is not None and content_type.startswith("image/"):
            try:
                from PIL import Image

                with Image.open(io.BytesIO(data)) as img:
                    width, height = img.size
            except Exception:
                width = height = None
        att = FakeAttachment(
            id=snowflake(),
            filename=filename,
            data=data,
            content_type=content_type,
            channel_id=channel_id,
            width=width,
            height=height,
            description=meta.get("description"),
            ephemeral=ephemeral,
        )
        self.attachments[att.id] = att
        return att

    # ================================================================ payloads

    def channel_payload(self, channel_id: int) -> JSON:
        thread = self.threads.get(channel_id)
        if thread is not None:
            return thread.payload(member_for=self.bot_user_id)
        ch = self.channels[channel_id]
        return {
            "id": str(ch.id),
            "type": ch.type,
            "guild_id": str(self.guild_id),
            "name": ch.name,
            "position": ch.position,
            "permission_overwrites": [],
            "parent_id": None,
            "topic": ch.topic,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": str(ch.last_message_id) if ch.last_message_id else None,
            "default_auto_archive_duration": ch.default_auto_archive_duration,
            "flags": 0,
        }

    def message_payload(self, msg: FakeMessage, *, include_reference: bool = True) -> JSON:
        author = self.users[msg.author_id]
        out: JSON = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "type": msg.type,
            "content": msg.content,
            "author": author.user_payload(),
            "attachments": [a.payload(self.base_url) for a in msg.files],
            "embeds": msg.embeds,
            "components": msg.components,
            "mentions": [
                {
                    **self.users[u].user_payload(),
                    "member": self.users[u].member_payload(with_user=False),
                }
                for u in msg.mention_ids
            ],
            "mention_roles": [],
            "mention_everyone": msg.mention_everyone,
            "pinned": msg.pinned,
            "tts": msg.tts,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "flags": msg.flags,
        }
        if msg.guild_id is not None:
            out["guild_id"] = str(msg.guild_id)
            out["member"] = author.member_payload(with_user=False)
        if msg.nonce is not None:
            out["nonce"] = msg.nonce
        if msg.reactions:
            out["reactions"] = [
                {
                    "emoji": {"id": None, "name": e},
                    "count": 1,
                    "me": True,
                    "me_burst": False,
                    "count_details": {"burst": 0, "normal": 1},
                    "burst_colors": [],
                }
                for e in msg.reactions
            ]
        if msg.webhook_id is not None:
            out["webhook_id"] = str(msg.webhook_id)
            out["application_id"] = str(self.application_id)
        inter = self.interactions.get(msg.interaction_id) if msg.interaction_id else None
        if inter is not None:
            meta: JSON = {
                "id": str(inter.id),
                "type": inter.type,
                "user": inter.user.user_payload(),
                "authorizing_integration_owners": {"0": str(self.guild_id)},
            }
            if inter.original_message_id is not None and msg.id != inter.original_message_id:
                meta["original_response_message_id"] = str(inter.original_message_id)
            if inter.message_id is not None:
                meta["interacted_message_id"] = str(inter.message_id)
            if inter.type == 2 and inter.data.get("target_id") and inter.data.get("type") == 3:
                meta["target_message_id"] = str(inter.data["target_id"])
            out["interaction_metadata"] = meta
            if inter.type == 2:
                out["interaction"] = {
                    "id": str(inter.id),
                    "type": 2,
                    "name": inter.data.get("name", ""),
                    "user": inter.user.user_payload(),
                    "member": inter.user.member_payload(with_user=False),
                }
        if msg.message_reference is not None:
            out["message_reference"] = msg.message_reference
            if include_reference:
                ref = self.messages.get(int(msg.message_reference["message_id"]))
                out["referenced_message"] = (
                    None
                    if ref is None or ref.deleted
                    else self.message_payload(ref, include_reference=False)
                )
        if msg.thread_id is not None and msg.thread_id in self.threads:
            out["thread"] = self.threads[msg.thread_id].payload(member_for=self.bot_user_id)
        return out

    def _content_visible(self, msg: FakeMessage) -> bool:
        """Spec §5.5: what a bot without MESSAGE_CONTENT may still see."""
        if msg.author_id == self.bot_user_id or msg.guild_id is None:
            return True
        if str(self.bot_user_id) in _MENTION_RE.findall(msg.content):
            return True
        if msg.message_reference is not None and self.bot_user_id in msg.mention_ids:
            ref = self.messages.get(int(msg.message_reference["message_id"]))
            if ref is not None and ref.author_id == self.bot_user_id and ref.interaction_id is None:
                return True
        return False

    def _redact(self, payload: JSON, msg: FakeMessage) -> JSON:
        if self.gateway.intents & INTENT_MESSAGE_CONTENT or self._content_visible(msg):
            out = payload
        else:
            out = {**payload, "content": "", "embeds": [], "attachments": [], "components": []}
            out.pop("poll", None)
        ref_payload = out.get("referenced_message")
        if ref_payload and msg.message_reference is not None:
            ref = self.messages.get(int(msg.message_reference["message_id"]))
            if ref is not None:
                out = {**out, "referenced_message": self._redact(ref_payload, ref)}
        return out

    def interaction_channel_payload(self, channel_id: int, user: FakeUser) -> JSON:
        return {**self.channel_payload(channel_id), "permissions": str(user.permissions)}

    def gateway_ready_events(self, session: GatewaySession) -> list[tuple[str, JSON]]:
        bot = self.bot_user.user_payload()
        ready: JSON = {
            "v": 10,
            "user": {
                **bot,
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "locale": "en-US",
            },
            "user_settings": {},
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "auth": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        return [("READY", ready), ("GUILD_CREATE", self.guild_create_payload(session.intents))]

    def guild_create_payload(self, intents: int) -> JSON:
        everyone = intents & INTENT_GUILD_PRESENCES
        members = [u for u in self.users.values() if everyone or u.id == self.bot_user_id]
        return {
            "id": str(self.guild_id),
            "name": self.guild_name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner.id),
            "unavailable": False,
            "member_count": len(self.users),
            "large": False,
            "joined_at": self.bot_user.joined_at,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "system_channel_id": str(self.channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "preferred_locale": "en-US",
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "features": [],
            "roles": list(self.roles.values()),
            "emojis": [],
            "stickers": [],
            "channels": [self.channel_payload(c) for c in self.channels],
            "threads": [
                t.payload(member_for=self.bot_user_id)
                for t in self.threads.values()
                if not t.archived
            ],
            "members": [u.member_payload() for u in members],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def gateway_members_chunk(self, request: JSON) -> JSON:
        users = list(self.users.values())
        if request.get("user_ids"):
            wanted = {int(u) for u in request["user_ids"]}
            users = [u for u in users if u.id in wanted]
        elif request.get("query"):
            users = [
                u for u in users if u.username.lower().startswith(str(request["query"]).lower())
            ]
        if request.get("limit"):
            users = users[: int(request["limit"])]
        out: JSON = {
            "guild_id": str(self.guild_id),
            "members": [u.member_payload() for u in users],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if request.get("nonce") is not None:
            out["nonce"] = request["nonce"]
        if request.get("presences"):
            out["presences"] = []
        return out

    # ================================================================ dispatch

    def _dispatch(self, event: str, data: JSON) -> asyncio.Future[None] | None:
        return self.gateway.dispatch(event, data)

    def dispatch_message(self, event: str, msg: FakeMessage) -> asyncio.Future[None] | None:
        if msg.ephemeral:
            return None
        if event == "MESSAGE_DELETE":
            data: JSON = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
            return self._dispatch(event, data)
        return self._dispatch(event, self._redact(self.message_payload(msg), msg))

    async def _send_and_wait(self, event: str, data: JSON) -> None:
        """Dispatch and wait until written; while the session is between connections the
        event is only buffered (and replayed on RESUME)."""
        session = self.gateway.current
        if session is None or session.invalidated:
            raise AssertionError(f"cannot dispatch {event}: no bot session on the fake gateway")
        fut = self._dispatch(event, data)
        if fut is not None:
            await asyncio.wait_for(fut, 5.0)

    # ================================================================ messages

    def _resolve_mentions(
        self,
        content: str,
        allowed: JSON | None,
        default_parse: tuple[str, ...],
        reply_author: int | None,
    ) -> tuple[list[int], bool]:
        if allowed is None:
            parse: list[str] = list(default_parse)
            listed: set[int] = set()
            replied = True
        else:
            parse = list(allowed.get("parse") or [])
            listed = {int(u) for u in allowed.get("users") or []}
            replied = bool(allowed.get("replied_user", False))
        out: list[int] = []
        for raw in _MENTION_RE.findall(content):
            uid = int(raw)
            if uid in self.users and uid not in out and ("users" in parse or uid in listed):
                out.append(uid)
        if reply_author is not None and replied and reply_author not in out:
            out.append(reply_author)
        everyone = ("@everyone" in content or "@here" in content) and "everyone" in parse
        return out, everyone

    def _check_files(self, uploads: list[UploadedFile], existing: int = 0) -> None:
        if len(uploads) + existing > MAX_FILES:
            raise form_error(
                ["attachments"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_FILES} or fewer in length."
            )
        for upload in uploads:
            if len(upload[3]) > self.filesize_limit:
                raise ApiError(413, 40005, "Request entity too large")

    @staticmethod
    def _check_content(content: object) -> str:
        if content is None:
            return ""
        if not isinstance(content, str):
            content = str(content)
        if len(content) > MAX_CONTENT:
            raise form_error(
                ["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        return content

    @staticmethod
    def _upload_meta(body: JSON) -> dict[str, JSON]:
        return {str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)}

    @staticmethod
    def _upload_index(upload: UploadedFile, position: int) -> str:
        m = _FILE_FIELD_RE.fullmatch(upload[0])
        return m.group(1) if m else str(position)

    def create_message(
        self,
        *,
        channel_id: int,
        author_id: int,
        body: JSON,
        uploads: list[UploadedFile],
        msg_type: int = 0,
        interaction: FakeInteraction | None = None,
        allowed_flags: int = FLAG_SUPPRESS_EMBEDS
        | FLAG_SUPPRESS_NOTIFICATIONS
        | FLAG_COMPONENTS_V2,
        allow_empty: bool = False,
        default_parse: tuple[str, ...] = ("users", "roles", "everyone"),
    ) -> FakeMessage:
        """Validate like Discord and store a new message (does not dispatch)."""
        if not self.is_channel(channel_id):
            raise ApiError(404, 10003, "Unknown Channel")
        content = self._check_content(body.get("content"))
        embeds = validate_embeds(body.get("embeds"))
        components = validate_components(body.get("components"))
        self._check_files(uploads)
        if not (
            allow_empty or content or embeds or uploads or components or body.get("sticker_ids")
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")
        reference = body.get("message_reference")
        reply_author: int | None = None
        if reference is not None:
            ref = self.messages.get(int(reference.get("message_id") or 0))
            if ref is None or ref.deleted:
                if reference.get("fail_if_not_exists", True):
                    raise form_error(
                        ["message_reference"],
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
                reference = None
            else:
                reply_author = ref.author_id
                reference = {
                    "type": 0,
                    "message_id": str(ref.id),
                    "channel_id": str(ref.channel_id),
                    "guild_id": str(self.guild_id),
                }
                msg_type = 19 if msg_type == 0 else msg_type
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            existing = self._nonces.get((author_id, str(nonce)))
            if existing is not None and existing in self.messages:
                return self.messages[existing]
        flags = int(body.get("flags") or 0) & allowed_flags
        allowed_mentions = body.get("allowed_mentions")
        mentions, everyone = self._resolve_mentions(
            content, allowed_mentions, default_parse, reply_author
        )
        msg = FakeMessage(
            id=snowflake(),
            channel_id=channel_id,
            guild_id=self.guild_id,
            author_id=author_id,
            content=content,
            embeds=embeds,
            components=components,
            flags=flags,
            type=msg_type,
            allowed_mentions=allowed_mentions,
            message_reference=reference,
            mention_ids=mentions,
            mention_everyone=everyone,
            interaction_id=interaction.id if interaction is not None else None,
            webhook_id=self.application_id if interaction is not None else None,
            tts=bool(body.get("tts", False)),
            nonce=nonce,
        )
        meta = self._upload_meta(body)
        msg.files = [
            self._register_upload(
                u, meta.get(self._upload_index(u, i), {}), channel_id, msg.ephemeral
            )
            for i, u in enumerate(uploads)
        ]
        self._store_message(msg)
        if nonce is not None:
            self._nonces[(author_id, str(nonce))] = msg.id
        return msg

    def _store_message(self, msg: FakeMessage) -> None:
        self.messages[msg.id] = msg
        if msg.ephemeral:
            return
        thread = self.threads.get(msg.channel_id)
        if thread is not None:
            thread.message_ids.append(msg.id)
        elif msg.channel_id in self.channels:
            self.channels[msg.channel_id].last_message_id = msg.id

    def edit_message(self, msg: FakeMessage, body: JSON, uploads: list[UploadedFile]) -> None:
        """Apply a PATCH the way Discord does (``attachments`` lists the files to keep)."""
        if msg.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        content = self._check_content(body["content"]) if "content" in body else msg.content
        embeds = validate_embeds(body["embeds"]) if "embeds" in body else msg.embeds
        components = (
            validate_components(body["components"]) if "components" in body else msg.components
        )
        kept = msg.files
        if body.get("attachments") is not None:
            keep_ids = {str(a.get("id")) for a in body["attachments"] if isinstance(a, dict)}
            kept = [a for a in msg.files if str(a.id) in keep_ids]
        self._check_files(uploads, existing=len(kept))
        if not (content or embeds or kept or uploads or components):
            raise ApiError(400, 50006, "Cannot send an empty message")
        meta = self._upload_meta(body)
        new_files = [
            self._register_upload(
                u, meta.get(self._upload_index(u, i), {}), msg.channel_id, msg.ephemeral
            )
            for i, u in enumerate(uploads)
        ]
        msg.content, msg.embeds, msg.components = content, embeds, components
        msg.files = [*kept, *new_files]
        if "flags" in body and body["flags"] is not None:
            msg.flags = (msg.flags & ~FLAG_SUPPRESS_EMBEDS) | (
                int(body["flags"]) & FLAG_SUPPRESS_EMBEDS
            )
        msg.flags &= ~FLAG_LOADING
        if "allowed_mentions" in body:
            msg.allowed_mentions = body["allowed_mentions"]
        default_parse = (
            ("users",) if msg.interaction_id is not None else ("users", "roles", "everyone")
        )
        reply_author = None
        if msg.message_reference is not None:
            ref = self.messages.get(int(msg.message_reference["message_id"]))
            reply_author = ref.author_id if ref is not None else None
        msg.mention_ids, msg.mention_everyone = self._resolve_mentions(
            msg.content, msg.allowed_mentions, default_parse, reply_author
        )
        msg.edited_timestamp = iso_now()
        msg.edits += 1

    def delete_message(self, msg: FakeMessage) -> None:
        msg.deleted = True
        thread = self.threads.get(msg.channel_id)
        if thread is not None and msg.id in thread.message_ids:
            thread.message_ids.remove(msg.id)
        self.dispatch_message("MESSAGE_DELETE", msg)

    # ================================================================ threads

    def create_thread(
        self,
        channel_id: int,
        body: JSON,
        *,
        message_id: int | None = None,
        owner_id: int | None = None,
    ) -> FakeThread:
        channel = self.channels.get(channel_id)
        if channel is None:
            if channel_id in self.threads:
                raise ApiError(400, 50024, "Cannot execute action on this channel type")
            raise ApiError(404, 10003, "Unknown Channel")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise form_error(
                ["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        duration = int(body.get("auto_archive_duration") or channel.default_auto_archive_duration)
        if duration not in THREAD_ARCHIVE_DURATIONS:
            raise form_error(
                ["auto_archive_duration"],
                "BASE_TYPE_CHOICES",
                "Value must be one of (60, 1440, 4320, 10080).",
            )
        parent_msg: FakeMessage | None = None
        if message_id is not None:
            parent_msg = self.messages.get(message_id)
            if parent_msg is None or parent_msg.deleted or parent_msg.channel_id != channel_id:
                raise ApiError(404, 10008, "Unknown Message")
            if message_id in self.threads or parent_msg.thread_id is not None:
                raise ApiError(400, 160004, "A thread has already been created for this message")
        owner = owner_id if owner_id is not None else self.bot_user_id
        thread_type = 11 if message_id is not None else int(body.get("type") or 11)
        thread = FakeThread(
            id=message_id if message_id is not None else snowflake(),
            parent_id=channel_id,
            guild_id=self.guild_id,
            name=name,
            owner_id=owner,
            type=thread_type,
            auto_archive_duration=duration,
            rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
            member_ids=[owner],
        )
        self.threads[thread.id] = thread
        self._dispatch(
            "THREAD_CREATE",
            {**thread.payload(member_for=self.bot_user_id), "newly_created": True},
        )
        if parent_msg is not None:
            parent_msg.thread_id = thread.id
            self.dispatch_message("MESSAGE_UPDATE", parent_msg)
        return thread
