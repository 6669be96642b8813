"""Provider instances per (app, provider), built lazily from each app's credentials.

Credentials uploaded through the API take precedence over the config file. Every ``get``
checks the stored credential's version (one indexed read per batch), so a rotation reaches
the next batch in every process without a restart, and the old instance with its cached
auth tokens is dropped.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from pushgate.config import Settings
from pushgate.metrics import CREDENTIAL_EXPIRY
from pushgate.providers import registry
from pushgate.providers.base import Provider, ProviderConfigError, ProviderSettings
from pushgate.providers.settings import section
from pushgate.providers.transport import Transport
from pushgate.store.credentials import CredentialStore

log = logging.getLogger("pushgate.providers")


def provider_classes() -> dict[str, type[Provider]]:
    """The deliverable providers' classes, by name (from the registry)."""
    return {spec.name: spec.provider for spec in registry.specs()}


#: Version used for credentials that come from the config file (API versions start at 1).
_CONFIG = 0


class ProviderPool:
    def __init__(self, settings: Settings, transport: Transport, creds: CredentialStore) -> None:
        self.settings = settings
        self.transport = transport
        self.creds = creds
        self.classes = provider_classes()
        self.specs = {spec.name: spec for spec in registry.specs()}
        self._instances: dict[tuple[str, str], tuple[int, Provider]] = {}
        self._lock = asyncio.Lock()
        #: Instances replaced by a credential rotation, closed once their in-flight sends are done.
        self._retired: dict[asyncio.Task[None], Provider] = {}
        self._configured: dict[tuple[str, str], dict[str, ProviderSettings]] = {}

    def configured(self, app_id: str, app_name: str) -> dict[str, ProviderSettings]:
        """Credentials from the config file only (the file does not change while running: built once
        per app, treat as read-only)."""
        key = (app_id, app_name)
        found = self._configured.get(key)
        if found is None:
            sections = self.settings.provider_sections(app_id, app_name)
            found = self._configured[key] = {k: v for k, v in sections.items() if k in self.classes}
        return found

    async def available(self, app_id: str, app_name: str, *, max_age: float = 0.0) -> set[str]:
        """Providers this app can deliver to now (config file or API); ``max_age``: see
        :meth:`CredentialStore.providers`."""
        return set(self.configured(app_id, app_name)) | (
            await self.creds.providers(app_id, max_age=max_age) & set(self.classes)
        )

    async def get(self, app_id: str, app_name: str, provider: str) -> Provider | None:
        """The provider for this app, or ``None`` when the app has no credentials for it."""
        if provider not in self.classes:
            return None
        version = await self.creds.version(app_id, provider)
        key = (app_id, provider)
        cached = self._instances.get(key)
        wanted = _CONFIG if version is None else version
        if cached is not None and cached[0] == wanted:
            return cached[1]
        async with self._lock:
            cached = self._instances.get(key)
            if cached is not None and cached[0] == wanted:
                return cached[1]
            settings: ProviderSettings | None
            if version is None:
                settings = self.configured(app_id, app_name).get(provider)
            else:
                loaded = await self.creds.load(app_id, provider)
                if loaded is None:  # no master key in this process: fall back to the file
                    # (cached under the row's version, so the next batch does not rebuild it)
                    settings = self.configured(app_id, app_name).get(provider)
                else:
                    wanted, stored, expires_at = loaded
                    settings = section(self.specs[provider].settings, provider, stored)
                    if expires_at is not None:
                        CREDENTIAL_EXPIRY.labels(app_id, provider).set(expires_at)
            if settings is not None and settings.timeout is None:
                # engine.http_timeout is every provider's default, including APNs, which builds
                # its own HTTP/2 transport and would otherwise fall back to its own 10 s.
                settings = msgspec.structs.replace(settings, timeout=self.settings.engine.http_timeout)
            inst = None if settings is None else await self.classes[provider].create(settings, self.transport)
            if inst is not None and not self.settings.message_ids(app_id, app_name):
                inst.message_ids = False  # [apps.<name>] message_ids = false (docs/receipts.md)
            cert_expiry = getattr(inst, "certificate_expires_at", None)
            if isinstance(cert_expiry, int | float):
                CREDENTIAL_EXPIRY.labels(app_id, provider).set(cert_expiry)
            if cached is not None:
                self._retire(cached[1])
                log.info("%s credentials of app %s changed: provider rebuilt", provider, app_id)
            if inst is None:
                self._instances.pop(key, None)
            else:
                self._instances[key] = (wanted, inst)
        return inst

    async def validate(self, app_id: str, app_name: str) -> list[str]:
        """Build every configured provider now so bad credentials fail at startup, naming the key."""
        ok: list[str] = []
        for name in sorted(await self.available(app_id, app_name)):
            try:
                await self.get(app_id, app_name, name)
            except ProviderConfigError as exc:
                prefix = "" if app_name == "default" else f"apps.{app_name}."
                raise ProviderConfigError(f"{prefix}{exc}") from None
            ok.append(name)
        return ok

    def _retire(self, inst: Provider) -> None:
        """Close a replaced instance after its in-flight requests had time to finish.

        Batches that fetched it before the rotation may still be sending with it (APNs
        certificate auth owns its connection); closing it at once failed those sends.
        """

        async def later() -> None:
            await asyncio.sleep(self.retire_after)
            await inst.aclose()  # drops the old credential's cached auth tokens

        task = asyncio.create_task(later(), name="pushgate-retire-provider")
        self._retired[task] = inst
        task.add_done_callback(lambda t: self._retired.pop(t, None))

    @property
    def retire_after(self) -> float:
        """Longer than a dispatch job holding the instance can run: its chunks, each within a
        lease and a request timeout, with room for rate-limit waits."""
        e = self.settings.engine
        return max(300.0, 2 * e.lease_seconds + e.http_timeout)

    async def aclose(self) -> None:
        for task, inst in list(self._retired.items()):
            task.cancel()
            await inst.aclose()
        self._retired.clear()
        for _, inst in self._instances.values():
            await inst.aclose()
        self._instances.clear()
