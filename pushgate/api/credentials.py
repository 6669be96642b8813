"""Provider credentials through the API: upload/rotate, list metadata, delete.

Secrets are write-only: they are validated by building the provider from them, stored
encrypted, and never returned; responses and errors carry only metadata (a fingerprint, the
environment, expiry).

A URL in an uploaded credential (``base_url``, ``token_url``, a service account's
``token_uri``) receives the credential's secret, so it may only name the provider's own hosts
(``ProviderSpec.hosts``), hosts the operator lists (``outbound.upload_hosts``,
``apps.<name>.upload_hosts``) or, with ``devices.allow_loopback_endpoints``, the lab on loopback.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from pushgate.api.errors import ApiError, bad_request, error_responses, not_found
from pushgate.api.services import AppDep, Services, ServicesDep
from pushgate.config import Settings
from pushgate.domain.timefmt import rfc3339
from pushgate.domain.urls import UrlRefused, check_target, host_matches, is_loopback
from pushgate.providers import registry
from pushgate.providers.base import CredentialInfo, ProviderConfigError, ProviderSettings, ProviderSpec
from pushgate.store.apps import App
from pushgate.store.credentials import CredentialMeta
from pushgate.store.health import ProviderHealthStore


class CredentialOut(msgspec.Struct, omit_defaults=True):
    provider: str
    #: ``api`` (uploaded, encrypted in the database) or ``config`` (the config file).
    source: str
    fingerprint: str
    environment: str | None = None
    updated_at: str | None = None
    expires_at: str | None = None
    version: int | None = None
    #: Web Push only: the public key browsers subscribe with (not a secret).
    vapid_public_key: str | None = None


class CredentialEnvelope(msgspec.Struct):
    credential: CredentialOut


class CredentialList(msgspec.Struct):
    items: list[CredentialOut]


def _secret_values(body: Any) -> list[str]:
    if isinstance(body, dict):
        return [v for x in body.values() for v in _secret_values(x)]
    if isinstance(body, list):
        return [v for x in body for v in _secret_values(x)]
    return [body] if isinstance(body, str) and len(body) >= 8 else []


def _scrub(message: str, secrets: list[str]) -> str:
    """Provider errors name keys, but make sure no uploaded value ever comes back in one."""
    for value in sorted(secrets, key=len, reverse=True):
        message = message.replace(value, "****")
    return message


def _normalize(spec: ProviderSpec, body: dict[str, Any]) -> ProviderSettings:
    """The uploaded body as the provider's settings (same keys as the config file, after the
    provider's own reshaping, e.g. FCM's ``service_account`` object)."""
    try:
        body = spec.upload(dict(body))
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    if "uploaded" in body:
        raise bad_request("uploaded: unknown key (pushgate marks uploaded credentials itself)")
    body["uploaded"] = True
    files = [k for k in body if k.endswith("_file")]
    if files:
        raise bad_request(
            f"{files[0]}: upload the content, not a server path (file keys are for the config file)"
        )
    try:
        return msgspec.convert(body, spec.settings, strict=False)
    except msgspec.ValidationError as exc:
        raise bad_request(f"{spec.name}: {exc}") from None


def _check_hosts(spec: ProviderSpec, settings: ProviderSettings, config: Settings, app: App) -> None:
    """Every URL of the credential names a host the app may send this secret to (400 otherwise)."""
    allow = config.outbound.allowance(config.devices.allow_loopback_endpoints)
    listed = [*config.outbound.upload_hosts]
    listed += [h for key in (app.name, app.id) if key in config.apps for h in config.apps[key].upload_hosts]
    for key, url in spec.urls(settings):
        if url is None:
            continue
        try:
            target = check_target(url, allow)
        except UrlRefused as exc:
            raise bad_request(f"{spec.name}.{key}: {exc}") from None
        if host_matches(target.host, spec.hosts) or host_matches(target.host, listed):
            continue
        lab = target.host == "localhost" or (target.address is not None and is_loopback(target.address))
        if lab and allow.lab:
            continue
        own = ", ".join(sorted(spec.hosts))
        raise bad_request(
            f"{spec.name}.{key}: {target.host} is not a {spec.name} host (use {own}); the operator "
            f"can allow other hosts with [outbound] upload_hosts or [apps.{app.name}] upload_hosts"
        )


def describe(provider: str, settings: ProviderSettings) -> CredentialInfo:
    """What may be shown of a credential: the provider's own description (never a secret)."""
    return registry.get(provider).describe(settings)


def _spec(provider: str) -> ProviderSpec:
    spec = registry.find(provider)
    if spec is None:
        raise not_found("provider", provider)
    return spec


class CredentialController(Controller):
    path = "/credentials"
    tags = ["credentials"]

    @get(
        "/",
        summary="Credential metadata per provider (never the secrets)",
        responses=error_responses(400, 401),
    )
    async def list_credentials(self, app: AppDep, services: ServicesDep) -> CredentialList:
        items: list[CredentialOut] = []
        stored = {m.provider: m for m in await services.creds.list_meta(app.id)}
        for provider, m in stored.items():
            items.append(_uploaded_out(provider, m))
        for provider, section in services.pool.configured(app.id, app.name).items():
            if provider in stored:
                continue
            info = describe(provider, section)
            items.append(
                CredentialOut(
                    provider=provider,
                    source="config",
                    fingerprint=info.fingerprint,
                    environment=info.environment,
                    expires_at=rfc3339(info.expires_at),
                    vapid_public_key=info.public_key,
                )
            )
        return CredentialList(sorted(items, key=lambda c: c.provider))

    @put(
        "/{provider:str}",
        status_code=HTTP_200_OK,
        summary="Upload or rotate a provider credential",
        responses=error_responses(400, 401, 404, 409, 413),
    )
    async def put_credential(
        self,
        provider: FromPath[str],
        data: JSONBody[dict[str, Annotated[Any, msgspec.Meta()]]],
        app: AppDep,
        services: ServicesDep,
    ) -> CredentialEnvelope:
        return await upload_credential(app, services, provider, data)

    @delete(
        "/{provider:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete an uploaded credential",
        responses=error_responses(400, 401, 404),
    )
    async def delete_credential(self, provider: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        _spec(provider)
        if not await services.creds.delete(app.id, provider):
            raise not_found("uploaded credential for", provider)
        await _lift_quarantine(services, app.id, provider)


async def upload_credential(
    app: App, services: Services, provider: str, data: dict[str, Any]
) -> CredentialEnvelope:
    """Validate, try and store one uploaded credential (the native path of every front-end that
    uploads credentials: ``PUT /v1/credentials/{provider}`` and compat ones)."""
    spec = _spec(provider)
    if services.creds.box is None:
        raise ApiError(
            409,
            "conflict",
            "no master key: set PUSHGATE_SECRET_KEY (or secret_key in the config file, 16+ "
            "characters, e.g. `openssl rand -base64 32`) and restart, so uploaded credentials can be "
            "stored encrypted",
        )
    secrets = _secret_values(data)
    settings = _normalize(spec, data)
    _check_hosts(spec, settings, services.settings, app)
    stored: dict[str, Any] = msgspec.to_builtins(settings)
    secrets += _secret_values(stored)
    try:
        instance = await spec.provider.create(settings, services.pool.transport)
        await instance.aclose()
    except ProviderConfigError as exc:
        raise bad_request(f"{_scrub(str(exc), secrets)}") from None
    info = spec.describe(settings)
    meta = await services.creds.put(
        app.id,
        provider,
        stored,
        fingerprint=info.fingerprint,
        environment=info.environment,
        expires_at=info.expires_at,
    )
    await _lift_quarantine(services, app.id, provider)
    return CredentialEnvelope(_uploaded_out(provider, meta, info.public_key))


def _uploaded_out(provider: str, meta: CredentialMeta, public_key: str | None = None) -> CredentialOut:
    """An uploaded credential as the API shows it (listed, or answered to its upload)."""
    return CredentialOut(
        provider=provider,
        source="api",
        fingerprint=meta.fingerprint,
        environment=meta.environment,
        updated_at=rfc3339(meta.updated_at),
        expires_at=rfc3339(meta.expires_at),
        version=meta.version,
        vapid_public_key=public_key,
    )


async def _lift_quarantine(services: Services, app_id: str, provider: str) -> None:
    """A new credential deserves a fresh start: close the pair's breaker and wake its deferred
    work now instead of after the cooldown (a still-bad credential re-opens it at once)."""
    async with services.db.write() as conn:
        await ProviderHealthStore(services.db).reset(conn, app_id, provider)
    if services.engine is not None:
        services.engine.guards.quarantine.forget(app_id, provider)
        services.engine.notify()
