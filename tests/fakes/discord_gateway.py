"""Gateway (websocket) side of the loopback fake Discord.

Sessions outlive connections so RESUME can replay buffered dispatches; a fresh
IDENTIFY always creates a new session and becomes the one events go to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from tests.fakes.discord_models import (
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGE_TYPING,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    JSON,
    json_dumps,
)

log = logging.getLogger("tests.fakes.discord_gateway")

# Dispatches that are only sent when the session asked for the intent.
EVENT_INTENTS: dict[str, int] = {
    "GUILD_CREATE": INTENT_GUILDS,
    "GUILD_ROLE_CREATE": INTENT_GUILDS,
    "CHANNEL_CREATE": INTENT_GUILDS,
    "THREAD_CREATE": INTENT_GUILDS,
    "THREAD_UPDATE": INTENT_GUILDS,
    "THREAD_DELETE": INTENT_GUILDS,
    "GUILD_MEMBER_ADD": INTENT_GUILD_MEMBERS,
    "MESSAGE_CREATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_UPDATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_DELETE": INTENT_GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": INTENT_GUILD_MESSAGE_REACTIONS,
    "TYPING_START": INTENT_GUILD_MESSAGE_TYPING,
}

_CLOSE = object()


class GatewayHost(Protocol):
    token: str
    message_content_intent_allowed: bool
    members_intent_allowed: bool
    presences_intent_allowed: bool

    @property
    def gateway_url(self) -> str: ...

    def gateway_ready_events(self, session: GatewaySession) -> list[tuple[str, JSON]]: ...

    def gateway_members_chunk(self, request: JSON) -> JSON: ...


@dataclass(eq=False)
class GatewayConnection:
    ws: web.WebSocketResponse
    compress: str | None
    queue: asyncio.Queue[tuple[Any, asyncio.Future[None] | None]] = field(
        default_factory=asyncio.Queue
    )
    writer: asyncio.Task[None] | None = None
    alive: bool = True
    _zlib: Any = None

    def __post_init__(self) -> None:
        # zlib-stream is emulated faithfully. For zstd-stream (or anything else) the fake
        # sends TEXT frames, which discord.py parses as plain JSON in every mode (spec §1.2).
        if self.compress == "zlib-stream":
            self._zlib = zlib.compressobj()
        else:
            self.compress = None

    def send(self, payload: JSON | str) -> asyncio.Future[None]:
        text = payload if isinstance(payload, str) else json_dumps(payload)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.alive:
            fut.set_result(None)
            return fut
        self.queue.put_nowait((text, fut))
        return fut

    def close_after_pending(self, code: int, message: str = "") -> None:
        if self.alive:
            self.queue.put_nowait(((_CLOSE, code, message), None))

    async def _write(self, text: str) -> None:
        if self._zlib is not None:
            raw = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(raw)
        else:
            await self.ws.send_str(text)

    async def run_writer(self) -> None:
        while True:
            item, fut = await self.queue.get()
            try:
                if isinstance(item, tuple) and item and item[0] is _CLOSE:
                    self.alive = False
                    await self.ws.close(code=item[1], message=item[2].encode())
                    return
                if self.alive and not self.ws.closed:
                    await self._write(item)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("gateway write failed: %r", exc)
                self.alive = False
            finally:
                if fut is not None and not fut.done():
                    fut.set_result(None)

    async def stop(self) -> None:
        self.alive = False
        while not self.queue.empty():
            _, fut = self.queue.get_nowait()
            if fut is not None and not fut.done():
                fut.set_result(None)
        if self.writer is not None:
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.writer


@dataclass(eq=False)
class GatewaySession:
    session_id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    buffer: list[tuple[int, str]] = field(default_factory=list)
    connection: GatewayConnection | None = None
    invalidated: bool = False
    ready: bool = False


class GatewayHub:
    """Accepts gateway websockets and routes dispatches to the current session."""

    def __init__(self, host: GatewayHost) -> None:
        self.host = host
        self.sessions: dict[str, GatewaySession] = {}
        self.current: GatewaySession | None = None
        self.connections: list[GatewayConnection] = []
        self.received: list[JSON] = []  # every payload the client sent (heartbeats included)
        self.close_codes: list[int | None] = []  # close code of each finished connection
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_interval_ms = 41250
        self.suppress_heartbeat_ack = False

    # ------------------------------------------------------------------ dispatch

    @property
    def connected(self) -> bool:
        s = self.current
        return s is not None and s.connection is not None and s.connection.alive

    @property
    def intents(self) -> int:
        return self.current.intents if self.current is not None else 0

    def dispatch(self, event: str, data: JSON) -> asyncio.Future[None] | None:
        """Queue a dispatch on the current session (buffered for resume). None if filtered."""
        session = self.current
        if session is None or session.invalidated:
            return None
        return self._dispatch_to(session, event, data)

    def _dispatch_to(
        self, session: GatewaySession, event: str, data: JSON
    ) -> asyncio.Future[None] | None:
        needed = EVENT_INTENTS.get(event, 0)
        if needed and not session.intents & needed:
            return None
        session.seq += 1
        text = json_dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.buffer.append((session.seq, text))
        if len(session.buffer) > 5000:
            del session.buffer[:1000]
        conn = session.connection
        if conn is None or not conn.alive:
            return None
        return conn.send(text)

    # ------------------------------------------------------------------ faults

    def send_op(self, payload: JSON) -> None:
        if self.current is not None and self.current.connection is not None:
            self.current.connection.send(payload)

    def close_current(self, code: int) -> None:
        if self.current is not None and self.current.connection is not None:
            self.current.connection.close_after_pending(code)

    async def close_all(self, code: int = 1001) -> None:
        for conn in list(self.connections):
            conn.close_after_pending(code)
        for conn in list(self.connections):
            if conn.writer is not None:
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.writer), 2.0)
            await conn.stop()

    # ------------------------------------------------------------------ websocket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = GatewayConnection(ws=ws, compress=request.query.get("compress"))
        conn.writer = asyncio.create_task(conn.run_writer(), name="fake-discord-gw-writer")
        self.connections.append(conn)
        session: GatewaySession | None = None
        try:
            if request.query.get("v") != "10":
                conn.close_after_pending(4012, "Invalid API version")
            elif request.query.get("encoding", "json") != "json":
                conn.close_after_pending(4002, "Decode error")
            else:
                conn.send(
                    {
                        "op": 10,
                        "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                        "s": None,
                        "t": None,
                    }
                )
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    conn.close_after_pending(4002, "Decode error")
                    continue
                self.received.append(payload)
                session = await self._on_payload(conn, session, payload)
        finally:
            self.close_codes.append(ws.close_code)
            if session is not None and session.connection is conn:
                session.connection = None
                # A client-initiated 1000/1001 close invalidates the session.
                if ws.close_code in (1000, 1001) and conn.alive:
                    session.invalidated = True
                    if self.current is session:
                        self.current = None
            await conn.stop()
            if conn in self.connections:
                self.connections.remove(conn)
        return ws

    async def _on_payload(
        self, conn: GatewayConnection, session: GatewaySession | None, payload: JSON
    ) -> GatewaySession | None:
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:
            if not self.suppress_heartbeat_ack:
                conn.send({"op": 11})
        elif op == 2:
            if session is not None:
                conn.close_after_pending(4005, "Already authenticated")
                return session
            return await self._identify(conn, data or {})
        elif op == 6:
            return self._resume(conn, data or {})
        elif op == 8:
            if session is None:
                conn.close_after_pending(4003, "Not authenticated")
            else:
                self._dispatch_to(
                    session, "GUILD_MEMBERS_CHUNK", self.host.gateway_members_chunk(data or {})
                )
        elif op in (3, 4, 31):
            pass
        else:
            conn.close_after_pending(4001, "Unknown opcode")
        return session

    async def _identify(self, conn: GatewayConnection, data: JSON) -> GatewaySession | None:
        if data.get("token") != self.host.token:
            conn.close_after_pending(4004, "Authentication failed.")
            return None
        intents = int(data.get("intents", 0))
        if (
            (intents & INTENT_MESSAGE_CONTENT and not self.host.message_content_intent_allowed)
            or (intents & INTENT_GUILD_MEMBERS and not self.host.members_intent_allowed)
            or (intents & INTENT_GUILD_PRESENCES and not self.host.presences_intent_allowed)
        ):
            conn.close_after_pending(4014, "Disallowed intent(s).")
            return None
        if intents >= 1 << 26:
            conn.close_after_pending(4013, "Invalid intent(s).")
            return None
        self.identify_count += 1
        session = GatewaySession(
            session_id=secrets.token_hex(16), intents=intents, shard=data.get("shard")
        )
        session.connection = conn
        self.sessions[session.session_id] = session
        self.current = session
        last: asyncio.Future[None] | None = None
        for event, payload in self.host.gateway_ready_events(session):
            last = self._dispatch_to(session, event, payload) or last
        if last is not None:
            await last
        session.ready = True
        return session

    def _resume(self, conn: GatewayConnection, data: JSON) -> GatewaySession | None:
        if data.get("token") != self.host.token:
            conn.close_after_pending(4004, "Authentication failed.")
            return None
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.invalidated:
            conn.send({"op": 9, "d": False, "s": None, "t": None})
            return None
        self.resume_count += 1
        old = session.connection
        if old is not None and old is not conn:
            old.close_after_pending(4000, "Session resumed elsewhere")
        session.connection = conn
        self.current = session
        seq = int(data.get("seq") or 0)
        for s, text in session.buffer:
            if s > seq:
                conn.send(text)
        self._dispatch_to(session, "RESUMED", {"_trace": ["fake-discord"]})
        return session
