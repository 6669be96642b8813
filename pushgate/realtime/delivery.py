"""Realtime as a delivery path: how a worker reaches a publish's sessions, wherever they are.

The worker planning a publish calls :meth:`RealtimeDelivery.deliver` with the publish's rooms
(its users' and channels') and the event's payload, and gets back the sessions it reached,
``(sid, user)``, to record one delivery per session.

- Alone (no ``redis_url``) inside ``pushgate serve``: the process's own gateway emits to its
  sessions directly. A separate ``pushgate worker`` without Redis has no gateway and reaches no
  session (logged once; docs/realtime.md).
- With ``redis_url``: a request on the Redis channel ``pg:rt:deliver`` reaches every node's
  gateway (``pushgate serve`` processes, this one included); each emits to its *local* sessions
  of the rooms and answers with the ones it reached on the request's own reply channel. The
  requester waits for as many answers as Redis says received the request (PUBLISH's count:
  exactly the nodes listening, dead ones excluded), at most ``wait`` seconds. So a worker with
  no gateway, or a node that holds none of the sessions, reaches every one of them exactly once,
  and never learns a session twice. A node that answers too late still emitted: its sessions
  got the event without a delivery record (logged).

A personalized publish (a template, inline localizations) is rendered where the session is, for
its user (:func:`renderer`); a session whose notification does not render gets nothing and is
answered as failed, for the requester to record.

A session's ack is handled by the node that holds it (each node has the database):
``RealtimeDeliveries.record_ack`` records the ``delivered`` receipt and the user's ack for the
``first`` mode. The ack may arrive before the requester committed the session's record (a
fast client): the receipt is then retried for a few seconds; the user's ack is recorded at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from pushgate.domain import clock
from pushgate.domain.personalize import DeviceVars, Personalized
from pushgate.domain.templating import TemplateError
from pushgate.realtime.gateway import RealtimeGateway, Render
from pushgate.store.publishes.receipts import ReceiptResult
from pushgate.store.realtime_deliveries import RealtimeDeliveries

log = logging.getLogger("pushgate.realtime")

#: The Redis channel delivery requests go to; each request names its own reply channel.
REQUESTS = "pg:rt:deliver"
#: How long a requester waits for the nodes' answers.
WAIT_SECONDS = 2.0
#: An ack that finds no record yet (the requester has not committed it) is retried this often,
#: this many times.
ACK_RETRY_SECONDS = 0.25
ACK_RETRIES = 40


class _Request(msgspec.Struct):
    reply: str
    app_id: str
    publish_id: str
    rooms: dict[str, str | None]
    payload: dict[str, Any]
    personal: dict[str, Any] | None = None


class _Answer(msgspec.Struct):
    node: str
    sessions: list[tuple[str, str]]
    failed: list[tuple[str, str, str]] = msgspec.field(default_factory=list)


@dataclass(slots=True)
class Reach:
    """What a delivery reached: the sessions emitted to, ``(sid, user)``, and those whose
    personalized notification did not render, ``(sid, user, why)`` (nothing was emitted)."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def _render_users(personal: Personalized, users: list[str]) -> dict[str, dict[str, Any] | str]:
    out: dict[str, dict[str, Any] | str] = {}
    for user in users:
        try:
            _, notification, _ = personal.render(DeviceVars(user=user))
        except TemplateError as exc:
            out[user] = str(exc)
        else:
            out[user] = msgspec.to_builtins(notification)
    return out


def renderer(personal: dict[str, Any] | None) -> Render | None:
    """A personalized publish's notification per user (``personal``: the stored request's
    ``notification``, ``providers``, ``template`` and ``localizations``): rendered with the
    publish's data and the session's user only (no device: ``device.*`` reads nothing), in the
    template's default locale, all of a delivery's users in one worker thread (a slow template
    never holds the event loop). None: the same notification for everyone."""
    found = Personalized.from_request(personal) if personal else None
    if found is None:
        return None
    p = found

    async def render(users: list[str]) -> dict[str, dict[str, Any] | str]:
        return await asyncio.to_thread(_render_users, p, users)

    return render


class RealtimeDelivery:
    """Reaches a publish's sessions for the engine, locally or through Redis (module doc).

    ``gateway``: this process's socket.io server (None in a ``pushgate worker``);
    ``acks``: where this node records its sessions' acks (None: acks are not recorded, a
    process without a gateway has none)."""

    def __init__(
        self,
        gateway: RealtimeGateway | None,
        acks: RealtimeDeliveries | None,
        redis_url: str | None = None,
        *,
        wait: float = WAIT_SECONDS,
    ) -> None:
        self.gateway = gateway
        self.acks = acks
        self.wait = wait
        self.redis = aioredis.Redis.from_url(redis_url) if redis_url else None
        self.node = secrets.token_hex(8)
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = False

    async def start(self) -> None:
        """Answer other nodes' requests (a process with a gateway and Redis)."""
        if self.redis is not None and self.gateway is not None:
            pubsub = self.redis.pubsub()
            await pubsub.subscribe(REQUESTS)
            self._listener = asyncio.create_task(self._listen(pubsub), name="realtime-delivery")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()

    async def deliver(
        self,
        app_id: str,
        publish_id: str,
        rooms: Mapping[str, str | None],
        payload: dict[str, Any],
        personal: dict[str, Any] | None = None,
    ) -> Reach:
        """Emit the ``notification`` event to every session of ``rooms`` (room → its channel,
        None for a user's room) on every node. ``personal``: a personalized publish's content
        (:func:`renderer`), rendered per session's user where the session is."""
        if not rooms:
            return Reach()
        if self.redis is not None:
            return await self._ask_nodes(_Request("", app_id, publish_id, dict(rooms), payload, personal))
        if self.gateway is None:
            if not self._warned:
                self._warned = True
                log.warning(
                    "realtime publishes reach no session from this process: it has no gateway "
                    "and no redis_url (run the workers inside `pushgate serve`, or set redis_url)"
                )
            return Reach()
        return await self._emit_here(_Request("", app_id, publish_id, dict(rooms), payload, personal))

    async def _emit_here(self, request: _Request) -> Reach:
        assert self.gateway is not None
        app_id, publish_id = request.app_id, request.publish_id

        def on_ack(sid: str, user: str) -> None:
            task = asyncio.create_task(self._record_ack(app_id, publish_id, sid, user, clock.now()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        sent, failed = await self.gateway.emit_notification(
            request.rooms, request.payload, on_ack, renderer(request.personal)
        )
        return Reach(sent, failed)

    async def _record_ack(self, app_id: str, publish_id: str, sid: str, user: str, at: float) -> None:
        """Record the ack, retried while the session's record is not committed yet and when the
        write fails (a busy database): under ``first`` a lost ack is a push to a user who had
        the notification."""
        if self.acks is None:
            return
        failed: Exception | None = None
        for _ in range(ACK_RETRIES):
            try:
                done = await self.acks.record_ack(app_id, publish_id, sid, user, at)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = exc
            else:
                if done.result is not ReceiptResult.NOT_FOUND:
                    return
                failed = None
            await asyncio.sleep(ACK_RETRY_SECONDS)
        if failed is not None:
            log.error("realtime ack of session %s for publish %s not recorded: %s", sid, publish_id, failed)
        else:
            log.warning("realtime ack of session %s: publish %s has no record of it", sid, publish_id)

    async def _ask_nodes(self, request: _Request) -> Reach:
        assert self.redis is not None
        request.reply = reply = f"pg:rt:reply:{secrets.token_hex(12)}"
        publish_id = request.publish_id
        reached: dict[str, str] = {}
        failed: dict[str, tuple[str, str, str]] = {}
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(reply)  # before asking: no answer can be missed
            listening = int(await self.redis.publish(REQUESTS, msgspec.json.encode(request)))
            answers = 0
            deadline = asyncio.get_running_loop().time() + self.wait
            while answers < listening:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    log.warning(
                        "realtime publish %s: %d of %d nodes answered within %.1f s; sessions of "
                        "the others may have the event without a delivery record",
                        publish_id,
                        answers,
                        listening,
                        self.wait,
                    )
                    break
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 0.5))
                if message is None or message.get("type") != "message":
                    continue
                answer = msgspec.json.decode(message["data"], type=_Answer)
                answers += 1
                for sid, user in answer.sessions:
                    reached.setdefault(sid, user)
                for sid, user, why in answer.failed:
                    failed.setdefault(sid, (sid, user, why))
        except Exception as exc:
            # Redis down: no session is reached (nor recorded); the pushes go as without realtime.
            log.warning("realtime publish %s: Redis request failed: %s", publish_id, exc)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        return Reach(list(reached.items()), list(failed.values()))

    async def _listen(self, pubsub: Any) -> None:
        """This node's side: emit to local sessions and answer on the request's reply channel."""
        assert self.redis is not None
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                request = msgspec.json.decode(message["data"], type=_Request)
                reach = await self._emit_here(request)
                answer = _Answer(self.node, reach.sent, reach.failed)
                await self.redis.publish(request.reply, msgspec.json.encode(answer))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down, a malformed request: keep listening
                log.warning("realtime delivery request not handled: %s", exc)
                await asyncio.sleep(0.5)
