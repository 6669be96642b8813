"""The one interface every push provider implements.

A provider turns an already-rendered payload plus a batch of tokens into one
:class:`~pushgate.domain.outcomes.SendResult` per token. Rendering (pure) lives in
``pushgate.domain.render`` so admission can size-check without any I/O; authentication and
wire details live in the provider module.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pushgate.domain.outcomes import SendResult
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


class Provider(abc.ABC):
    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    async def create(cls, settings: Mapping[str, Any], transport: Transport) -> Provider:
        """Build a provider from its config section (already validated as a mapping).

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
