"""Presence: how many realtime sessions a user has open, on this node or across all of them.

Alone (no ``redis_url``) a process counts its own sessions in the socket.io manager's rooms.
With Redis, each node keeps its counts in a hash of its own (``pg:presence:<node>``: room →
sessions) and says it is alive in a sorted set (``pg:nodes``: node → last heartbeat); a count
is the sum over the nodes alive, so the sessions of a node that died without closing them stop
counting within ``NODE_TTL_SECONDS``, with no per-session timer. python-socketio's own Redis
manager fans messages out between nodes but cannot count another node's sessions, hence this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

import redis.asyncio as aioredis

log = logging.getLogger("pushgate.realtime")

#: A node whose heartbeat is older than this is dead: its sessions no longer count.
NODE_TTL_SECONDS = 30.0
HEARTBEAT_SECONDS = 5.0
NODES_KEY = "pg:nodes"


#: A close in one step: decrement, and drop the room from the hash once no session is left. Two
#: separate commands (HINCRBY, then HDEL when it said 0) let an open landing in between (a page
#: reload) be deleted with the room, counting 0 sessions while one was open.
_CLOSE = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return left
"""


def _hash_key(node: str) -> str:
    return f"pg:presence:{node}"


class RedisPresence:
    """Session counts shared by every node through Redis."""

    def __init__(self, url: str) -> None:
        self.redis = aioredis.Redis.from_url(url)
        #: This process's name in Redis: random, so a restarted node never inherits a dead one's counts.
        self.node = secrets.token_hex(8)
        self._beat: asyncio.Task[None] | None = None
        #: Run as EVALSHA (redis-py loads the script on the first NOSCRIPT answer).
        self._close = self.redis.register_script(_CLOSE)

    async def start(self) -> None:
        await self._heartbeat_once()
        self._beat = asyncio.create_task(self._heartbeat(), name="realtime-presence-heartbeat")

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        with contextlib.suppress(Exception):
            # A node that stops cleanly takes its counts with it at once.
            await self.redis.zrem(NODES_KEY, self.node)
            await self.redis.delete(_hash_key(self.node))
        await self.redis.aclose()

    async def _heartbeat_once(self) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(NODES_KEY, {self.node: now})
            pipe.expire(_hash_key(self.node), int(NODE_TTL_SECONDS * 2))
            # Forget nodes long dead (their hashes expired on their own).
            pipe.zremrangebyscore(NODES_KEY, "-inf", now - NODE_TTL_SECONDS * 10)
            await pipe.execute()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._heartbeat_once()
            except Exception as exc:  # Redis down: keep trying, sessions keep working locally
                log.warning("realtime presence heartbeat failed: %s", exc)

    async def opened(self, room: str) -> None:
        await self.redis.hincrby(_hash_key(self.node), room, 1)

    async def closed(self, room: str) -> None:
        """One session of ``room`` closed: atomic in Redis (``_CLOSE``), so it never wipes an
        open that arrives meanwhile, and the hash keeps only rooms with sessions."""
        await self._close(keys=[_hash_key(self.node)], args=[room])

    async def count(self, room: str) -> int:
        alive = await self.redis.zrangebyscore(NODES_KEY, time.time() - NODE_TTL_SECONDS, "+inf")
        if not alive:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for node in alive:
                pipe.hget(_hash_key(node.decode() if isinstance(node, bytes) else str(node)), room)
            counts = await pipe.execute()
        return sum(int(c) for c in counts if c is not None)
