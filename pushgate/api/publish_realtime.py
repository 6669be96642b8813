"""A publish's ``realtime`` option at admission (docs/realtime.md, "Realtime as a delivery path").

Checked here, with the rest of the request, so a publish that could never do what it asks is a
400 naming the field, not a surprise at planning: ``only`` needs a user or channel recipient
(nothing else stands for a session), and a dry run sends nothing. The mode a
publish gets is stored in its request only when it is not ``off``; such a publish is never
planned at admission (its plan job reaches the sessions first: ``engine/realtime_stage.py``).
"""

from __future__ import annotations

from typing import Any

from pushgate.api.errors import bad_request
from pushgate.api.schemas import PublishIn
from pushgate.config import Settings

MODES = ("off", "also", "first", "only")
#: Recipient kinds that stand for sessions (a user's room, a channel's room).
SESSION_KINDS = ("user", "channel")


def with_realtime(request: dict[str, Any], data: PublishIn, settings: Settings) -> dict[str, Any]:
    """``request`` with its ``realtime`` mode (400 when the publish cannot use it). A mode the
    publish did not ask for (``[realtime] default_mode``) is not applied where it cannot be (a
    dry run, the gateway disabled): those go as push only."""
    asked = data.realtime is not None
    mode = data.realtime if asked else settings.realtime.default_mode
    if mode not in MODES:
        raise bad_request(f"realtime: one of {', '.join(MODES)} (got {mode!r})")
    if mode == "off":
        return request
    why_not = None
    if not settings.realtime.enabled:
        why_not = "the realtime gateway is disabled on this server ([realtime] enabled = false)"
    elif request.get("dry_run"):
        why_not = "a dry run sends nothing"
    if why_not is not None:
        if asked:
            raise bad_request(f'realtime: {why_not}; leave realtime out or set it to "off"')
        return request
    if mode == "only" and not any(r["type"] in SESSION_KINDS for r in request["recipients"]):
        raise bad_request(
            'realtime: "only" reaches the sessions of user and channel recipients, and this '
            'publish has none; add a {"type": "user"} or {"type": "channel"} recipient, or use '
            '"also"/"off"'
        )
    request["realtime"] = mode
    return request
