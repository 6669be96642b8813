"""notification-socket.io's sessions on the gateway (docs/compat.md, "notification-socket.io").

Its clients connect without a token (``io.connect(url)``) and then emit ``register(userId,
connectionId)`` with a connection id their backend registered over REST. Such a handshake is a
*pending* session: it joins no room and is disconnected unless a valid ``register`` arrives
within :data:`REGISTER_TIMEOUT_SECONDS`, so tokenless sockets cannot pile up. A valid one joins
the user's room (it counts in presence and is reached by a publish to the user like any session)
and the session is of the kind :data:`KIND`: it receives the ``message`` event, carrying the JSON
its backend posted, not pushgate's ``notification`` event, and never acks (notification-socket.io
clients do not), so its delivery stays ``sent``.

The posted JSON travels in the publish's notification ``data`` under :data:`MESSAGE_KEY` (a JSON
text: ``data`` values are strings), so the stored publish keeps it and every node's gateway can
give it back as it was posted. A publish that did not come through the front-end (a native one
to the same user) reaches such a session with its unified notification object as the message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

#: The event notification-socket.io's clients listen to.
EVENT = "message"
#: The event its clients register with: ``register(userId, connectionId)``.
REGISTER = "register"
#: The session kind saved with a registered notification-socket.io session.
KIND = "notification_socketio"
#: Where the posted message is kept in the publish's notification ``data``.
MESSAGE_KEY = "notification_socketio.message"
#: A tokenless session that has not registered within this time is disconnected.
REGISTER_TIMEOUT_SECONDS = 10.0
#: The longest user id and connection id accepted (the user is a pushgate user: 200).
MAX_ID = 200

#: ``(user, connection id)`` → the app whose backend registered it, or None (bound by the server).
FindConnection = Callable[[str, str], Awaitable[str | None]]


def register_args(args: tuple[Any, ...]) -> tuple[str, str] | None:
    """``(user, connection id)`` from the event's arguments, None when they are not two ids. A
    numeric user id is its decimal text, as JavaScript's object keys made it in the original."""
    if len(args) != 2:
        return None
    user, connection_id = args
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not isinstance(connection_id, str):
        return None
    if not (0 < len(user) <= MAX_ID and 0 < len(connection_id) <= MAX_ID):
        return None
    return user, connection_id


def message_of(notification: dict[str, Any]) -> Any:
    """What a notification-socket.io session receives for this notification: the JSON its
    backend posted, else (a native publish) the notification itself."""
    data = notification.get("data") or {}
    raw = data.get(MESSAGE_KEY) if isinstance(data, dict) else None
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return notification
