"""The lab's in-memory world, shared by every simulator route.

One object per running lab: credentials, issued OAuth tokens, minted subscriptions, the
ledger and the faults. Everything runs on one event loop, so no locking is needed.
"""

from __future__ import annotations

import secrets
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
class IssuedTokens:
    """Bearer tokens one simulated OAuth server issued.

    Kept an hour past expiry, so a simulator can answer "expired" rather than "unknown" the
    way the real service does; older ones are pruned so memory stays bounded.
    """

    expiry: dict[str, float] = field(default_factory=dict)

    def add(self, token: str, lifetime: float) -> None:
        now = time.time()
        if len(self.expiry) > 1024:
            self.expiry = {t: exp for t, exp in self.expiry.items() if exp > now - 3600}
        self.expiry[token] = now + lifetime

    def issue(self, prefix: str, lifetime: float, nbytes: int = 32) -> str:
        token = prefix + secrets.token_urlsafe(nbytes)
        self.add(token, lifetime)
        return token

    def expires_at(self, token: str) -> float | None:
        return self.expiry.get(token)

    def valid(self, token: str) -> bool:
        expiry = self.expiry.get(token)
        return expiry is not None and expiry > time.time()


@dataclass(slots=True)
class LabState:
    base_url: str
    credentials: LabCredentials
    ledger: Ledger
    faults: FaultBook = field(default_factory=FaultBook)
    #: FCM OAuth access tokens.
    access_tokens: IssuedTokens = field(default_factory=IssuedTokens)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    #: Per-simulator state of the other providers, keyed by provider name (each module owns its entry).
    extras: dict[str, Any] = field(default_factory=dict)

    def issue_token(self, token: str, lifetime: float) -> None:
        self.access_tokens.add(token, lifetime)

    def token_valid(self, token: str) -> bool:
        return self.access_tokens.valid(token)
