"""The one interface every push provider implements, and the spec that registers it.

A provider turns an already-rendered payload plus a batch of tokens into one
:class:`~pushgate.domain.outcomes.SendResult` per token. Rendering (pure) lives in
``pushgate/domain/render_<name>.py`` so admission can size-check without any I/O;
authentication and wire details live in the provider module. Its :class:`ProviderSpec`
bundles everything the rest of pushgate needs to know about it, so that knowledge is written
once, beside the provider (``registry.py`` lists the specs).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import msgspec

from pushgate.domain.outcomes import SendResult
from pushgate.domain.rendering import Renderer
from pushgate.domain.urls import Allowance
from pushgate.providers.transport import Transport


@dataclass(slots=True)
class Target:
    """One recipient of a batch.

    ``token`` is the provider token as stored; for Web Push it is the subscription as compact
    JSON ``{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}``.
    """

    recipient_id: str
    token: str
    #: APNs only: ``production`` or ``sandbox`` from the device record (None: the credential's default).
    environment: str | None = None

    def row(self) -> list[str]:
        """The compact form stored in a dispatch job's ``targets`` (``Target(*row)`` reads it back)."""
        if self.environment:
            return [self.recipient_id, self.token, self.environment]
        return [self.recipient_id, self.token]


class ProviderConfigError(Exception):
    """Credentials in the config are missing or malformed; the message names the key."""


class ProviderSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What every provider's settings Struct has; each provider module subclasses it.

    One Struct per provider is the whole contract of its config section (``[fcm]``,
    ``[apps.<name>.fcm]``, credentials uploaded through the API): types, defaults and simple
    bounds are declared here once, so ``create`` receives checked values and only has to check
    what a type cannot say (a key that is required unless another is given, a key that must
    parse).
    """

    #: Per-request timeout in seconds (default: ``engine.http_timeout``, filled in by the pool).
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    #: Set by pushgate on credentials uploaded through the API (never written by hand): their
    #: URLs are a tenant's choice, so answers from hosts that are not the provider's own are
    #: recorded without their text (``outbound.foreign_answer``).
    uploaded: bool = False

    def trusted_hosts(self, hosts: frozenset[str]) -> frozenset[str] | None:
        """The hosts whose answers may be repeated to a tenant: the provider's own for an
        uploaded credential, any (None) for the operator's config."""
        return hosts if self.uploaded else None


Concurrency = Annotated[int, msgspec.Meta(ge=1)]
"""Requests in flight per app (each provider declares its own default)."""

HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://")]


class Provider(abc.ABC):
    name: ClassVar[str]
    #: Payloads carry ``pushgate: {"p", "d"}`` (docs/receipts.md): ``send_batch`` then receives a
    #: :class:`~pushgate.domain.message_ids.Stamped` rendering. A provider that can carry them
    #: says True (every built-in one); the provider pool turns it off for an app whose
    #: ``[apps.<name>] message_ids`` is false. A plugin that says nothing gets plain renderings.
    message_ids: bool = False

    @classmethod
    @abc.abstractmethod
    async def create(cls, settings: Any, transport: Transport) -> Provider:
        """Build a provider from its typed settings Struct (a plain mapping is converted once,
        for callers that hold one, e.g. tests).

        Raises :class:`ProviderConfigError` for unusable credentials.
        """

    @abc.abstractmethod
    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        """Send ``rendered`` (the output of ``pushgate.domain.render.render_<provider>``) to
        every target, concurrently, and return one result per target in the same order.

        Never raises for a provider or network error: those become results.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release anything held (cached tokens need no cleanup)."""


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What may be shown of a credential: never the secret itself."""

    fingerprint: str
    #: APNs: the default environment of devices without one.
    environment: str | None = None
    #: When a certificate in the credential stops working (UNIX time).
    expires_at: float | None = None
    #: A public key clients need (Web Push: the VAPID key browsers subscribe with).
    public_key: str | None = None


#: ``(token as given, where pushgate may connect) -> (stored token, identity key)``; raises
#: ValueError. The allowance is the lab flag alone (a bool) or the whole :class:`Allowance`.
TokenParser = Callable[[str | dict[str, Any], bool | Allowance], tuple[str, str]]
#: ``(token already stripped, where pushgate may connect) -> token``; raises ValueError.
TokenRule = Callable[[str, bool | Allowance], str]


def _no_upload(body: dict[str, Any]) -> dict[str, Any]:
    return body


def _no_urls(_settings: Any) -> Sequence[tuple[str, str | None]]:
    return []


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything the rest of pushgate knows about one delivery path (see ``registry.py``)."""

    name: str
    #: The typed config section; ``create`` receives an instance of it.
    settings: type[ProviderSettings]
    provider: type[Provider]
    renderer: Renderer
    #: Device platforms whose tokens this provider can carry.
    platforms: frozenset[str]
    #: What may be shown of a credential (``GET /v1/credentials``).
    describe: Callable[[Any], CredentialInfo]
    #: Publish recipient types that address the provider natively, with the target kind each
    #: becomes (``{"fcm_topic": "topic"}`` → a target ``topic:<name>``).
    native: Mapping[str, str] = field(default_factory=dict)
    #: A provider-specific token check run after the common one (trimmed, no whitespace).
    token_rule: TokenRule | None = None
    #: Replaces the common token check entirely (Web Push subscriptions are objects).
    token_parser: TokenParser | None = None
    #: Devices carry an ``environment`` (APNs production/sandbox).
    environments: bool = False
    #: The provider's own floor for the wait after a ``quota`` answer, seconds (FCM asks for at
    #: least a minute), whatever ``retry.quota_min_delay`` says.
    quota_floor: float = 0.0
    #: Reshapes a body uploaded through ``PUT /v1/credentials/<name>`` into settings keys
    #: (raises ValueError naming the key).
    upload: Callable[[dict[str, Any]], dict[str, Any]] = _no_upload
    #: The provider's real hosts: the only ones an uploaded credential's URLs may name unless
    #: the operator allows more (``outbound.upload_hosts``, ``apps.<name>.upload_hosts``).
    hosts: frozenset[str] = frozenset()
    #: The URLs a settings instance makes pushgate connect to, as ``(key, url)``: what the
    #: upload check looks at.
    urls: Callable[[Any], Sequence[tuple[str, str | None]]] = _no_urls
    #: For providers whose endpoint each device names (Web Push, WNS): the push-service origin
    #: (``scheme://host[:port]``) of a stored token, None when it has none. Set, the breaker is
    #: kept per origin as well as per pair (docs/providers.md, "Breakers").
    origin_of: Callable[[str], str | None] | None = None

    def normalize_token(self, token: str | dict[str, Any], allow_lab: bool | Allowance) -> tuple[str, str]:
        """``(stored token, identity key)``: the key decides "same device"; raises ValueError."""
        if self.token_parser is not None:
            return self.token_parser(token, allow_lab)
        if not isinstance(token, str):
            raise ValueError(f"must be a string for provider {self.name!r}")
        token = token.strip()
        if not token or len(token) > 4096:
            raise ValueError("must be 1-4096 characters")
        if any(c.isspace() for c in token):
            raise ValueError("must not contain whitespace")
        if self.token_rule is not None:
            token = self.token_rule(token, allow_lab)
        return token, token

    def platform_error(self, platform: str) -> str | None:
        if platform not in self.platforms:
            allowed = ", ".join(sorted(self.platforms))
            return f"platform {platform!r} cannot use provider {self.name!r} (allowed: {allowed})"
        return None


def digest(value: str) -> str:
    """A short, stable fingerprint of a secret (enough to tell two apart, useless to an attacker)."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]
