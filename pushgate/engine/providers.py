"""Provider instances per (app, provider), built lazily from each app's credentials."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from pushgate.config import Settings
from pushgate.domain.notification import PROVIDERS
from pushgate.providers.base import Provider, ProviderConfigError
from pushgate.providers.transport import Transport

log = logging.getLogger("pushgate.providers")


#: Where each provider's implementation lives; only those in ``PROVIDERS`` are loaded.
PROVIDER_CLASSES: dict[str, str] = {
    "fcm": "pushgate.providers.fcm:FcmProvider",
    "webpush": "pushgate.providers.webpush:WebPushProvider",
    "apns": "pushgate.providers.apns:ApnsProvider",
    "hms": "pushgate.providers.hms:HmsProvider",
    "wns": "pushgate.providers.wns:WnsProvider",
    "mipush": "pushgate.providers.mipush:MiPushProvider",
}


def provider_classes() -> dict[str, type[Provider]]:
    """The deliverable providers' classes (``domain.notification.PROVIDERS``)."""
    out: dict[str, type[Provider]] = {}
    for name in PROVIDERS:
        module, _, attr = PROVIDER_CLASSES[name].partition(":")
        out[name] = getattr(importlib.import_module(module), attr)
    return out


class ProviderPool:
    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self.classes = provider_classes()
        self._instances: dict[tuple[str, str], Provider] = {}
        self._lock = asyncio.Lock()

    def configured(self, app_id: str, app_name: str) -> dict[str, dict[str, Any]]:
        return {
            k: v for k, v in self.settings.provider_settings(app_id, app_name).items() if k in self.classes
        }

    async def get(self, app_id: str, app_name: str, provider: str) -> Provider | None:
        """The provider for this app, or ``None`` when the app has no credentials for it."""
        key = (app_id, provider)
        inst = self._instances.get(key)
        if inst is not None:
            return inst
        section = self.configured(app_id, app_name).get(provider)
        if section is None:
            return None
        async with self._lock:
            inst = self._instances.get(key)
            if inst is None:
                inst = await self.classes[provider].create(section, self.transport)
                self._instances[key] = inst
        return inst

    async def validate(self, app_id: str, app_name: str) -> list[str]:
        """Build every configured provider now so bad credentials fail at startup, naming the key."""
        ok: list[str] = []
        for name in self.configured(app_id, app_name):
            try:
                await self.get(app_id, app_name, name)
            except ProviderConfigError as exc:
                prefix = "" if app_name == "default" else f"apps.{app_name}."
                raise ProviderConfigError(f"{prefix}{exc}") from None
            ok.append(name)
        return ok

    async def aclose(self) -> None:
        for inst in self._instances.values():
            await inst.aclose()
        self._instances.clear()
