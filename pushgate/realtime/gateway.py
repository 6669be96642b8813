"""The socket.io server: authenticated sessions, their rooms, and presence.

python-socketio (ASGI mode) speaks the socket.io v4 protocol, WebSocket and long-polling, so
the official JavaScript client and every other socket.io client connect unchanged; we add only
what is pushgate's: the handshake checks a connection token (``auth: {"token": …}``, socket.io
v4's standard place), and a session joins one room for its user and one per channel the token
allows. Rooms are per app (``<app id>|u|<user>``, ``<app id>|c|<channel>``): two apps' users
with the same name never meet.

A handshake is checked inside the API's wrong-credential throttle (:meth:`RealtimeGateway.bind`
hands it over): a forged or unknown-app token counts against the client's address like a wrong
API key, and a blocked address is refused before its token is looked at, so a flood of forged
tokens costs no database read. The app a token's ``iss`` names is cached, misses too
(``tokens.IssuerCache``); only a handshake that reads it from the database holds one of its
address's ``max_failures`` places for lookups under way, so a storm of genuine reconnections
from one address (a NAT) is not refused while the first of them looks the app up.

CORS: ``[]`` in the configuration means the same origin only (engine.io's ``None``: engine.io
itself reads ``[]`` as "no origin check at all"), and no origin is ever told it may send
credentials (the token is in the handshake, never in a cookie).

With ``redis_url``, python-socketio's Redis manager carries every emit to the nodes holding the
room's sessions, and presence is counted across nodes (``presence.py``); without it one process
serves realtime alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import socketio

from pushgate.realtime.presence import RedisPresence
from pushgate.realtime.tokens import FindApp, IssuerCache, SecretFor, TokenError, verify
from pushgate.store.realtime_deliveries import session_recipient

log = logging.getLogger("pushgate.realtime")

#: Where the server answers, on pushgate's own port (socket.io's default path).
PATH = "socket.io"
#: The event a publish's notification arrives as (docs/realtime.md).
EVENT = "notification"
#: Called with ``(sid, user)`` when a session acks its ``notification`` event.
OnAck = Callable[[str, str], None]
#: A personalized notification per user: its JSON object, or why it did not render.
Render = Callable[[list[str]], Awaitable[dict[str, dict[str, Any] | str]]]


class Throttle(Protocol):
    """The wrong-credential throttle (``api/throttle.py:FailureThrottle``), by client address."""

    def retry_after(self, address: str) -> float: ...

    def reserve(self, address: str) -> bool: ...

    def release(self, address: str, *, failed: bool) -> None: ...


def _refused(message: str) -> socketio.exceptions.ConnectionRefusedError:
    # The message reaches the client as connect_error's message (socket.io v4).
    return socketio.exceptions.ConnectionRefusedError(message)


def user_room(app_id: str, user: str) -> str:
    return f"{app_id}|u|{user}"


def channel_room(app_id: str, channel: str) -> str:
    return f"{app_id}|c|{channel}"


class RealtimeGateway:
    """One process's socket.io server. ``find_app`` resolves a token's ``iss`` to the app,
    ``secret_for`` gives its secret, ``throttle`` counts forged tokens by client address (all
    set once the database is open: :meth:`bind`)."""

    def __init__(
        self,
        *,
        cors_allowed_origins: list[str],
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        redis_url: str | None = None,
    ) -> None:
        self.presence = RedisPresence(redis_url) if redis_url else None
        manager = socketio.AsyncRedisManager(redis_url, channel="pushgate-realtime") if redis_url else None
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=manager,
            # engine.io: None is the same origin only, [] is no check at all.
            cors_allowed_origins=cors_allowed_origins or None,
            cors_credentials=False,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            logger=False,
            engineio_logger=False,
        )
        self.asgi = socketio.ASGIApp(self.sio, socketio_path=PATH)
        self._find_app: FindApp | None = None
        self._secret_for: SecretFor | None = None
        self._issuers = IssuerCache()
        self._throttle: Throttle | None = None
        self._address_of: Callable[[str | None], str] = lambda host: host or "-"
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)

    def bind(
        self,
        find_app: FindApp,
        secret_for: SecretFor,
        throttle: Throttle | None = None,
        address_of: Callable[[str | None], str] | None = None,
    ) -> None:
        """``address_of``: the key a client's IP counts under (``api/throttle.py:client_key``)."""
        self._find_app, self._secret_for = find_app, secret_for
        self._throttle = throttle
        if address_of is not None:
            self._address_of = address_of

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        find_app, secret_for = self._find_app, self._secret_for
        if find_app is None or secret_for is None:
            raise _refused("pushgate is starting; retry shortly")
        # engine.io's ASGI environ says REMOTE_ADDR 127.0.0.1 always: the ASGI scope's client is
        # the peer (or, behind [server] trusted_proxies, the forwarded address uvicorn put there).
        peer = (environ.get("asgi.scope") or {}).get("client")
        address = self._address_of(peer[0] if peer else None)
        throttle = self._throttle
        blocked = throttle.retry_after(address) if throttle is not None else 0.0
        if blocked > 0:
            raise _refused(
                "too many failed handshakes from this address (forged or unknown tokens); "
                f"retry in {math.ceil(blocked)} s"
            )
        reserved = False

        async def secret_of(issuer: str) -> tuple[str, str] | None:
            nonlocal reserved
            if throttle is not None and not self._issuers.known(issuer):  # a database read follows
                if not throttle.reserve(address):
                    raise TokenError(
                        "too many failed handshakes from this address at once; retry in a second",
                        guess=False,
                    )
                reserved = True
            found = await self._issuers.resolve(issuer, find_app)
            return None if found is None else (found[0], await secret_for(*found))

        failed = False
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            claims = await verify(token, secret_of)
        except TokenError as exc:
            failed = exc.guess
            raise _refused(str(exc)) from None
        finally:
            if throttle is not None and reserved:
                throttle.release(address, failed=failed)
            elif throttle is not None and failed and throttle.reserve(address):
                # A forged token naming a cached app read nothing, but it counts all the same.
                throttle.release(address, failed=True)
        await self.sio.save_session(sid, {"app_id": claims.app_id, "user": claims.user})
        room = user_room(claims.app_id, claims.user)
        await self.sio.enter_room(sid, room)
        await self._count(room, +1)
        for channel in claims.channels:
            await self.sio.enter_room(sid, channel_room(claims.app_id, channel))
        log.debug("realtime session %s of app %s opened", sid, claims.app_id)

    async def _disconnect(self, sid: str, *_reason: Any) -> None:
        session = await self.sio.get_session(sid)
        if session:
            await self._count(user_room(session["app_id"], session["user"]), -1)
        log.debug("realtime session %s closed", sid)

    async def _count(self, room: str, change: int) -> None:
        if self.presence is None:
            return
        try:
            await (self.presence.opened(room) if change > 0 else self.presence.closed(room))
        except Exception as exc:  # Redis down: the session works, only the shared count is off
            log.warning("realtime presence not updated in Redis: %s", exc)

    async def emit_notification(
        self,
        rooms: Mapping[str, str | None],
        payload: dict[str, Any],
        on_ack: OnAck,
        render: Render | None = None,
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
        """Emit the ``notification`` event to this node's sessions in ``rooms`` (room → the
        channel it stands for, None for a user's room), each session once. Each session gets
        ``payload`` plus its own ``delivery_id`` (and the ``channel`` it was reached through,
        when not through its user's room), with a per-session ack callback: a room-wide emit has
        none. Emitted here only (``ignore_queue``): the other nodes emit to their own sessions
        (``delivery.py``).

        ``render``: a personalized publish's notification per user (or why it could not be
        rendered), called once for all the sessions' users. Returns the sessions emitted to,
        ``(sid, user)``, and those whose notification did not render, ``(sid, user, why)``."""
        reached: dict[str, str | None] = {}
        for room, channel in rooms.items():
            for sid, _eio_sid in list(self.sio.manager.get_participants("/", room)):
                if channel is None:
                    reached[sid] = None
                else:
                    reached.setdefault(sid, channel)
        users: dict[str, str] = {}
        for sid in reached:
            try:
                session = await self.sio.get_session(sid)
            except KeyError:  # it closed meanwhile
                continue
            if session and session.get("user"):
                users[sid] = session["user"]
        rendered = await render(sorted(set(users.values()))) if render is not None and users else {}
        sent: list[tuple[str, str]] = []
        failed: list[tuple[str, str, str]] = []
        for sid, user in users.items():
            event = {**payload, "delivery_id": session_recipient(sid)}
            own = rendered.get(user)
            if isinstance(own, str):
                failed.append((sid, user, own))
                continue
            if own is not None:
                event["notification"] = own
            channel = reached[sid]
            if channel is not None:
                event["channel"] = channel

            def acked(*_answer: Any, sid: str = sid, user: str = user) -> None:
                on_ack(sid, user)

            await self.sio.emit(EVENT, event, to=sid, callback=acked, ignore_queue=True)
            sent.append((sid, user))
        return sent, failed

    async def start(self) -> None:
        if self.presence is not None:
            await self.presence.start()

    async def sessions(self, app_id: str, user: str) -> int:
        """Open sessions of the user: on every node with Redis, else on this process."""
        room = user_room(app_id, user)
        if self.presence is not None:
            return await self.presence.count(room)
        return sum(1 for _ in self.sio.manager.get_participants("/", room))

    async def close(self) -> None:
        """Disconnect every session (shutdown): clients reconnect to another node."""
        # Room None holds every session of the namespace (python-socketio's convention).
        for sid, _eio_sid in list(self.sio.manager.get_participants("/", None)):
            await self.sio.disconnect(sid)
        if self.presence is not None:
            await self.presence.stop()
