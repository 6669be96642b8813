"""Sentori's words translated into the native API's, with no database and no HTTP.

Why a module of its own: every route of the front-end (Sentori's own and the Expo-compatible
ones) names devices, deliveries and audiences the same way, and each of those names must read
back to exactly one native thing. Keeping the translations here, pure, is what makes "the spToken
a registration answered is the device a send reaches" true by construction.

- A Sentori **spToken** (``ipt_…``, the install-push-token handle) is the native device id with
  its ``dev_`` prefix replaced (``ipt_~<id>`` for an id without it, which a Sockudo or
  Centrifugo client may choose): stable across token rotations, nothing to store.
- A **delivery id** (Sentori's per-recipient send id, an Expo push ticket id) is
  ``<publish id>.<recipient id>``: the native delivery record's key.
- The **installId** is the device's tag ``sentori_install``; an Expo push token the app
  registered with it is the tag ``expo_token`` (both indexed, so both are found in one read).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

#: Device tags the front-end owns (docs/compat.md, "Sentori").
INSTALL_TAG = "sentori_install"
EXPO_TAG = "expo_token"

#: Sentori's ``kind`` → (native provider, the platform a device of that kind runs).
KINDS: dict[str, tuple[str, str]] = {
    "apns": ("apns", "ios"),
    "fcm": ("fcm", "android"),
    "webpush": ("webpush", "web"),
    "hcm": ("hms", "android"),
    "hms": ("hms", "android"),
    "mipush": ("mipush", "android"),
}
#: Native provider → the ``kind`` Sentori calls it.
KIND_OF = {"apns": "apns", "fcm": "fcm", "webpush": "webpush", "hms": "hcm", "mipush": "mipush", "wns": "wns"}

_EXPO_TOKEN = re.compile(r"^(?:Exponent|Expo)PushToken\[[^\]]{1,400}\]$")
_HEX = re.compile(r"^[0-9a-fA-F]{2,256}$")


class TargetError(ValueError):
    """A send's target that names nothing Sentori knows (Sentori's ``bad_target``)."""


def handle_of(device_id: str) -> str:
    """The spToken of a native device: ``ipt_<x>`` for ``dev_<x>`` (every id pushgate makes),
    ``ipt_~<id>`` for an id chosen by a client (a Sockudo ``d1``), so each names its device."""
    rest = device_id.removeprefix("dev_")
    if rest != device_id and rest and not rest.startswith("~"):
        return "ipt_" + rest
    return "ipt_~" + device_id


def device_id_of(handle: str) -> str | None:
    """The native device an spToken (or a native device id) names; None: not such a handle."""
    if handle.startswith("ipt_~") and len(handle) > 5:
        return handle[5:]
    if handle.startswith("ipt_") and len(handle) > 4:
        return "dev_" + handle[4:]
    if handle.startswith("dev_") and len(handle) > 4:
        return handle
    return None


def delivery_id(publish_id: str, recipient_id: str) -> str:
    return f"{publish_id}.{recipient_id}"


def split_delivery_id(ident: str) -> tuple[str, str] | None:
    """(publish id, recipient id) of a delivery id; None when it is not one."""
    publish_id, sep, recipient_id = ident.partition(".")
    if not sep or not publish_id.startswith("pub_") or not recipient_id:
        return None
    return publish_id, recipient_id


def is_expo_token(value: str) -> bool:
    return bool(_EXPO_TOKEN.match(value))


def as_text(value: Any) -> str:
    """A JSON value as the string a native ``data``/``tags`` value must be (strings unchanged)."""
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def text_map(values: dict[str, Any] | None) -> dict[str, str] | None:
    return None if values is None else {str(k): as_text(v) for k, v in values.items()}


# ---- targets --------------------------------------------------------------------------------


class Targets:
    """What a send names, sorted by how each is resolved: native recipients that need no read,
    devices by id, by installId, by Expo token and by native token (read before admission)."""

    def __init__(self) -> None:
        self.recipients: list[dict[str, Any]] = []
        self.device_ids: list[str] = []
        self.installs: list[str] = []
        self.expo_tokens: list[str] = []
        self.native_tokens: list[str] = []

    def empty(self) -> bool:
        return not (
            self.recipients or self.device_ids or self.installs or self.expo_tokens or self.native_tokens
        )

    def add_expression(self, expr: str) -> None:
        """One ``to`` string: ``ipt_…``, ``user:…``, ``install:…``, ``topic:…`` or an Expo token."""
        kind, sep, value = expr.partition(":")
        if sep and value and kind in ("user", "install", "topic", "token"):
            if kind == "user":
                self.recipients.append({"type": "user", "user": value})
            elif kind == "install":
                self.installs.append(value)
            elif kind == "topic":
                self.recipients.append({"type": "channel", "channel": value})
            else:
                self.add_expression(value)
            return
        dev = device_id_of(expr)
        if dev is not None:
            self.device_ids.append(dev)
        elif is_expo_token(expr):
            self.expo_tokens.append(expr)
        else:
            raise TargetError(
                f"to: {expr[:80]!r} is not a target: use an spToken (ipt_…), user:<id>, "
                "install:<installId> or topic:<name>"
            )

    def add_object(self, target: dict[str, Any]) -> None:
        """``to`` as an object: ``{"topic"}``, ``{"userFingerprintHex"}``, ``{"user"}``,
        ``{"install"}``/``{"installId"}`` or ``{"spToken"}``."""
        if len(target) != 1:
            raise TargetError("to: give exactly one of topic, userFingerprintHex, user, installId, spToken")
        ((key, value),) = target.items()
        if not isinstance(value, str) or not value:
            raise TargetError(f"to.{key}: must be a non-empty string")
        if key == "topic":
            self.recipients.append({"type": "channel", "channel": value})
        elif key == "userFingerprintHex":
            if not _HEX.match(value) or len(value) % 2:
                raise TargetError("to.userFingerprintHex: not hex")
            self.recipients.append({"type": "user", "user": value})
        elif key in ("user", "appUserId"):
            self.recipients.append({"type": "user", "user": value})
        elif key in ("install", "installId"):
            self.installs.append(value)
        elif key == "spToken":
            self.add_expression(value)
        else:
            raise TargetError(
                f"to.{key}: unknown target (use topic, userFingerprintHex, user, installId, spToken)"
            )


def audience_filter(node: Any, where: str = "audience") -> dict[str, Any]:
    """Sentori's audience expression as a native filter (docs/filters.md); the native parser then
    checks its size and depth. Leaves: ``{"trait": k, "is"|"in"|"not": v}``, ``{"user": id}``,
    ``{"device": "appVersion"|"platform"|"kind"|"locale"|"timezone", op: v}``."""
    if not isinstance(node, dict) or not node:
        raise TargetError(f"{where}: must be an object")
    if set(node) <= {"all", "any"} and len(node) == 1:
        ((op, items),) = node.items()
        if not isinstance(items, list):
            raise TargetError(f"{where}.{op}: must be a list")
        return {op: [audience_filter(item, f"{where}.{op}[{i}]") for i, item in enumerate(items)]}
    if set(node) == {"not"}:
        return {"not": audience_filter(node["not"], f"{where}.not")}
    if "trait" in node:
        ops = {k: v for k, v in node.items() if k != "trait"}
        if len(ops) != 1 or next(iter(ops)) not in ("is", "in", "not", "exists"):
            raise TargetError(f"{where}: a trait leaf takes one of is, in, not, exists")
        ((op, value),) = ops.items()
        value = [as_text(v) for v in value] if op == "in" and isinstance(value, list) else value
        return {"tag": node["trait"], op: value if op in ("in", "exists") else as_text(value)}
    if set(node) == {"user"}:
        return {"user": {"is": node["user"]}}
    if "device" in node:
        return _device_leaf(node, where)
    raise TargetError(f"{where}: unknown condition {sorted(node)} (use all, any, not, trait, user, device)")


_VERSION_OPS = {"versionGte": "gte", "versionGt": "gt", "versionLte": "lte", "versionLt": "lt", "is": "is"}
_DEVICE_FIELDS = {"platform": "platform", "kind": "provider", "locale": "locale", "timezone": "timezone"}


def _device_leaf(node: dict[str, Any], where: str) -> dict[str, Any]:
    field = node["device"]
    ops = {k: v for k, v in node.items() if k != "device"}
    if len(ops) != 1:
        raise TargetError(f"{where}: a device leaf takes one operator")
    ((op, value),) = ops.items()
    if field == "appVersion" and op in _VERSION_OPS:
        return {"app_version": {_VERSION_OPS[op]: value}}
    if field in _DEVICE_FIELDS and op in ("is", "in"):
        if field == "kind":
            names = value if isinstance(value, list) else [value]
            value = [KINDS.get(str(v), (str(v), ""))[0] for v in names]
            return {"provider": {"in": value}}
        return {_DEVICE_FIELDS[field]: {op: value}}
    raise TargetError(f"{where}: unknown device condition {field!r} {op!r}")


def trait_filter(traits: dict[str, Any]) -> dict[str, Any]:
    """``traits`` (every target has each) as a native filter."""
    if not traits:
        raise TargetError("traits: give at least one trait")
    return {"all": [{"tag": str(k), "is": as_text(v)} for k, v in traits.items()]}


# ---- notification content ----------------------------------------------------------------

#: Sentori's (iOS's) interruption levels → the native ones (the native spelling is accepted too).
_LEVELS = {
    "passive": "passive",
    "active": "active",
    "timeSensitive": "time-sensitive",
    "time-sensitive": "time-sensitive",
    "critical": "critical",
}


def notification_of(
    title: Any, body: Any, data: dict[str, Any] | None, options: dict[str, Any] | None
) -> dict[str, Any]:
    """A native ``notification`` from Sentori's ``title``/``body``/``data``/``options``
    (rich media, actions, interruption level, thread, Android importance, sound, badge, TTL)."""
    out: dict[str, Any] = {}
    if title is not None:
        out["title"] = title
    if body is not None:
        out["body"] = body
    if data:
        out["data"] = text_map(data)
    opts = options or {}
    image = (opts.get("richMedia") or {}).get("imageUrl") if isinstance(opts.get("richMedia"), dict) else None
    if image is not None:
        out["image"] = image
    if isinstance(opts.get("actions"), list):
        out["actions"] = [_action(a) for a in opts["actions"]]
    if "interruptionLevel" in opts:
        out["interruption_level"] = _LEVELS.get(str(opts["interruptionLevel"]), opts["interruptionLevel"])
    simple = {
        "threadIdentifier": "thread_id",
        "channelImportance": "channel_importance",
        "category": "category",
        "sound": "sound",
        "badge": "badge",
        "ttl": "ttl_seconds",
        "collapseKey": "collapse_key",
        "mutableContent": "mutable_content",
        "contentAvailable": "content_available",
        "url": "url",
    }
    for theirs, ours in simple.items():
        if theirs in opts:
            out[ours] = opts[theirs]
    return out


def _action(action: Any) -> Any:
    if not isinstance(action, dict):
        return action  # the native validation names it
    out = {"id": action.get("id"), "title": action.get("title")}
    if action.get("isTextInput"):
        out["text_input"] = action.get("placeholder") or action.get("title")
    return out
