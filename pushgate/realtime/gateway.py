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

With the notification-socket.io front-end on (``bind``'s ``find_connection``), a handshake
without a token is a pending session that must ``register`` with a connection id (``foreign.py``);
a wrong ``register`` disconnects it and counts in the same throttle as a forged token.

With ``redis_url``, python-socketio's Redis manager carries every emit to the nodes holding the
room's sessions, and presence is counted across nodes (``presence.py``); without it one process
serves realtime alone.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import socketio

from pushgate.realtime import foreign
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
        self._find_connection: foreign.FindConnection | None = None
        #: Pending (tokenless, unregistered) sessions → the task that disconnects them.
        self._pending: dict[str, asyncio.Task[None]] = {}
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on(foreign.REGISTER, self._register)

    def bind(
        self,
        find_app: FindApp,
        secret_for: SecretFor,
        throttle: Throttle | None = None,
        address_of: Callable[[str | None], str] | None = None,
        find_connection: foreign.FindConnection | None = None,
    ) -> None:
        """``address_of``: the key a client's IP counts under (``api/throttle.py:client_key``);
        ``find_connection``: notification-socket.io's connection ids (None: that front-end is
        off, and a handshake without a token is refused)."""
        self._find_app, self._secret_for = find_app, secret_for
        self._find_connection = find_connection
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
        if self._find_connection is not None and _tokenless(auth):
            await self._open_pending(sid, address)
            return
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
        token = _token_of(auth)
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

    async def _open_pending(self, sid: str, address: str) -> None:
        await self.sio.save_session(sid, {"pending": address})
        self._pending[sid] = asyncio.create_task(self._expire_pending(sid), name=f"realtime-pending-{sid}")

    async def _expire_pending(self, sid: str) -> None:
        await asyncio.sleep(foreign.REGISTER_TIMEOUT_SECONDS)
        self._pending.pop(sid, None)
        log.debug("realtime session %s did not register in time", sid)
        await self.sio.disconnect(sid)

    async def _register(self, sid: str, *args: Any) -> None:
        """notification-socket.io's ``register(userId, connectionId)`` (``foreign.py``): a pending
        session with a connection id its app registered for that user joins the user's room;
        anything else from a pending session disconnects it and counts as a failure of its
        address (a guessed id is a forged credential). A session already registered, or opened
        with a token, ignores the event."""
        session = await self.sio.get_session(sid)
        find = self._find_connection
        address = session.get("pending") if session else None
        if find is None or address is None:
            return
        # Claimed before any wait: a second ``register`` while this one is checked is ignored
        # (it would join the room and count in presence twice).
        waiting = self._pending.pop(sid, None)
        if waiting is None:  # another register is being checked, or the wait ran out
            return
        waiting.cancel()
        throttle = self._throttle
        if throttle is not None and (throttle.retry_after(address) > 0 or not throttle.reserve(address)):
            await self._drop_pending(sid, "its address is blocked (too many failed attempts)")
            return
        found = foreign.register_args(args)
        try:
            app_id = await find(*found) if found is not None else None
        except Exception as exc:  # the database is down: not the client's fault
            if throttle is not None:
                throttle.release(address, failed=False)
            await self._drop_pending(sid, f"the connection id could not be looked up: {exc}")
            return
        if throttle is not None:
            throttle.release(address, failed=app_id is None)
        if found is None or app_id is None:
            why = "not (userId, connectionId)" if found is None else "an unknown or expired connection id"
            await self._drop_pending(sid, why)
            return
        user = found[0]
        if not self.sio.manager.is_connected(sid, "/"):
            return
        room = user_room(app_id, user)
        await self.sio.enter_room(sid, room)
        await self.sio.save_session(sid, {"app_id": app_id, "user": user, "kind": foreign.KIND})
        await self._count(room, +1)
        log.debug("realtime session %s of app %s registered (notification-socket.io)", sid, app_id)

    async def _drop_pending(self, sid: str, why: str) -> None:
        task = self._pending.pop(sid, None)
        if task is not None:
            task.cancel()
        log.info("realtime session %s: register refused (%s); disconnected", sid, why)
        await self.sio.disconnect(sid)

    async def _disconnect(self, sid: str, *_reason: Any) -> None:
        task = self._pending.pop(sid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        session = await self.sio.get_session(sid)
        if session and session.get("app_id"):
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
        foreign_sids: set[str] = set()
        for sid in reached:
            try:
                session = await self.sio.get_session(sid)
            except KeyError:  # it closed meanwhile
                continue
            if session and session.get("user"):
                users[sid] = session["user"]
                if session.get("kind") == foreign.KIND:
                    foreign_sids.add(sid)
        rendered = await render(sorted(set(users.values()))) if render is not None and users else {}
        sent: list[tuple[str, str]] = []
        failed: list[tuple[str, str, str]] = []
        for sid, user in users.items():
            event = {**payload, "delivery_id": session_recipient(sid)}
            own = rendered.get(user)
            if isinstance(own, str):
                failed.append((sid, user, own))
                continue
            if sid in foreign_sids:  # notification-socket.io's event; its clients never ack
                message = foreign.message_of(own if own is not None else payload.get("notification") or {})
                await self.sio.emit(foreign.EVENT, message, to=sid, ignore_queue=True)
                sent.append((sid, user))
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
        for task in list(self._pending.values()):
            task.cancel()
        self._pending.clear()
        if self.presence is not None:
            await self.presence.stop()


def _token_of(auth: Any) -> Any:
    return auth.get("token") if isinstance(auth, dict) else None


def _tokenless(auth: Any) -> bool:
    """No ``auth`` at all, or one without a ``token`` key: notification-socket.io's
    ``io.connect(url)``. An explicit ``{"token": null}`` meant a token, and is refused as missing."""
    return auth is None or (isinstance(auth, dict) and "token" not in auth)
