"""The lab's in-memory world, shared by every simulator route.

One object per running lab: credentials, issued OAuth tokens, minted subscriptions, the
ledger and the faults. Everything runs on one event loop, so no locking is needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from pushgate.lab.credentials import LabCredentials
from pushgate.lab.faults import FaultBook
from pushgate.lab.ledger import Ledger


@dataclass(slots=True)
class Subscription:
    """A browser-side push subscription the lab minted and can therefore decrypt for."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: bytes
    gone: bool = False


@dataclass(slots=True)
class LabState:
    base_url: str
    credentials: LabCredentials
    ledger: Ledger
    faults: FaultBook = field(default_factory=FaultBook)
    access_tokens: dict[str, float] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    #: Per-simulator state of the other providers, keyed by provider name (each module owns its entry).
    extras: dict[str, Any] = field(default_factory=dict)

    def issue_token(self, token: str, lifetime: float) -> None:
        """Remember an access token until it expires; prune old ones so memory stays bounded."""
        now = time.time()
        if len(self.access_tokens) > 1024:
            self.access_tokens = {t: exp for t, exp in self.access_tokens.items() if exp > now}
        self.access_tokens[token] = now + lifetime

    def token_valid(self, token: str) -> bool:
        expiry = self.access_tokens.get(token)
        return expiry is not None and expiry > time.time()
