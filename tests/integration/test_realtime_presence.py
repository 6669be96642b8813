"""Presence counts against a real Redis server (review of issue 13, finding 7): a session that
opens while another of the same user is closing (a page reload) is never wiped from the count."""

from __future__ import annotations

from typing import Any

from support.redis import RedisServer

from pushgate.realtime import presence


async def test_an_open_landing_inside_a_close_still_counts(redis_server: RedisServer) -> None:
    node = presence.RedisPresence(redis_server.url)
    await node.start()
    room = "app|u|reloading"
    try:
        await node.opened(room)  # the page before the reload
        send = node.redis.execute_command
        armed = True

        async def reload_opens_here(*args: Any, **kwargs: Any) -> Any:
            """Right after the close's first Redis command answers, the reloaded page's session
            opens (on this node): deterministically, the interleaving a real reload can hit."""
            nonlocal armed
            answer = await send(*args, **kwargs)
            if armed:
                armed = False
                await node.opened(room)
            return answer

        node.redis.execute_command = reload_opens_here  # type: ignore[method-assign]
        try:
            await node.closed(room)
        finally:
            node.redis.execute_command = send  # type: ignore[method-assign]
        assert not armed, "the close sent no command to Redis"
        assert await node.count(room) == 1  # the reloaded page's session
        await node.closed(room)
        assert await node.count(room) == 0
        # A room that reaches 0 leaves the node's hash (it does not grow with every user ever seen).
        assert not await node.redis.hexists(f"pg:presence:{node.node}", room)
        await node.closed(room)  # a close with nothing open never goes below 0
        assert await node.count(room) == 0
        await node.opened(room)
        assert await node.count(room) == 1
    finally:
        await node.stop()
