"""Provider credentials through the API: upload/rotate, list metadata, delete.

Secrets are write-only: they are validated by building the provider from them, stored
encrypted, and never returned; responses and errors carry only metadata (a fingerprint, the
environment, expiry).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Annotated, Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from litestar import Controller, delete, get, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from pushgate import config
from pushgate.api.errors import ApiError, bad_request, error_responses, not_found
from pushgate.api.services import AppDep, Services, ServicesDep
from pushgate.domain.notification import KNOWN_PROVIDERS, PROVIDERS
from pushgate.domain.render import b64url_encode
from pushgate.domain.timefmt import rfc3339
from pushgate.providers.base import ProviderConfigError
from pushgate.store.health import ProviderHealthStore

_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "fcm": config.FcmSettings,
    "webpush": config.WebPushSettings,
    "apns": config.ApnsSettings,
    "hms": config.HmsSettings,
    "wns": config.WnsSettings,
    "mipush": config.MiPushSettings,
}


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


def _normalize(provider: str, body: dict[str, Any]) -> dict[str, Any]:
    """The uploaded body as a config section for the provider (same keys as the config file)."""
    body = dict(body)
    if provider == "fcm" and "service_account" in body:
        account = body.pop("service_account")
        if not isinstance(account, dict):
            raise bad_request("service_account: must be the service-account JSON object")
        body["service_account_json"] = json.dumps(account)
    if provider == "webpush" and body.pop("generate", False):
        if body.get("vapid_private_key"):
            raise bad_request("generate: give either generate: true or vapid_private_key, not both")
        key = ec.generate_private_key(ec.SECP256R1())
        body["vapid_private_key"] = b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))
        body["vapid_public_key"] = _vapid_public(key)
    files = [k for k in body if k.endswith("_file")]
    if files:
        raise bad_request(
            f"{files[0]}: upload the content, not a server path (file keys are for the config file)"
        )
    try:
        section = msgspec.convert(body, _SECTIONS[provider], strict=False)
    except msgspec.ValidationError as exc:
        raise bad_request(f"{provider}: {exc}") from None
    settings: dict[str, Any] = msgspec.to_builtins(section)
    return settings


def _vapid_public(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url_encode(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def describe(provider: str, s: dict[str, Any]) -> tuple[str, str | None, float | None, str | None]:
    """``(fingerprint, environment, expires_at, vapid_public_key)``: what may be shown of a secret."""
    environment: str | None = None
    expires: float | None = None
    public: str | None = None
    if provider == "fcm":
        raw = s.get("service_account_json")
        try:
            if not raw and s.get("service_account_file"):
                with open(os.path.expanduser(str(s["service_account_file"])), encoding="utf-8") as fh:
                    raw = fh.read()
            info = json.loads(raw) if raw else {}
        except (OSError, ValueError):
            info = {}
        fp = f"{info.get('client_email', '?')} key {str(info.get('private_key_id', ''))[:8]}"
    elif provider == "webpush":
        public = s.get("vapid_public_key")
        fp = f"vapid {str(public or '')[:16]}" if public else _digest(str(s.get("vapid_private_key", "")))
    elif provider == "apns":
        environment = s.get("environment", "production")
        cert = _apns_certificate(s)
        if cert is not None:
            fp = "cert " + cert.fingerprint(cert.signature_hash_algorithm or _sha256())[:8].hex()
            expires = cert.not_valid_after_utc.timestamp()
        else:
            fp = f"key {s.get('key_id', '?')} team {s.get('team_id', '?')}"
    elif provider == "hms":
        fp = f"app {s.get('app_id', '?')}"
    elif provider == "wns":
        fp = f"package {s.get('package_sid', '?')}"
    elif provider == "mipush":
        fp = f"package {s.get('package_name', '?')} {_digest(str(s.get('app_secret', '')))}"
    else:
        fp = _digest(json.dumps(s, sort_keys=True))
    return fp, environment, expires, public


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _apns_certificate(s: dict[str, Any]) -> x509.Certificate | None:
    """The client certificate of certificate-based APNs credentials, for its expiry."""
    try:
        if s.get("certificate_p12_base64"):
            password = s.get("certificate_password")
            _, cert, _ = pkcs12.load_key_and_certificates(
                base64.b64decode(s["certificate_p12_base64"]), password.encode() if password else None
            )
            return cert
        if s.get("certificate_pem"):
            return x509.load_pem_x509_certificate(str(s["certificate_pem"]).encode())
    except (ValueError, TypeError):
        return None
    return None


def _check_provider(provider: str) -> None:
    if provider not in KNOWN_PROVIDERS:
        raise not_found("provider", provider)
    if provider not in PROVIDERS:
        raise bad_request(f"{provider}: not deliverable by this build yet (use {', '.join(PROVIDERS)})")


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
            items.append(
                CredentialOut(
                    provider=provider,
                    source="api",
                    fingerprint=m.fingerprint,
                    environment=m.environment,
                    updated_at=rfc3339(m.updated_at),
                    expires_at=rfc3339(m.expires_at),
                    version=m.version,
                )
            )
        for provider, section in services.pool.configured(app.id, app.name).items():
            if provider in stored:
                continue
            fp, env, expires, public = describe(provider, section)
            items.append(
                CredentialOut(
                    provider=provider,
                    source="config",
                    fingerprint=fp,
                    environment=env,
                    expires_at=rfc3339(expires),
                    vapid_public_key=public,
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
        _check_provider(provider)
        if services.creds.box is None:
            raise ApiError(
                409,
                "conflict",
                "no master key: set PUSHGATE_SECRET_KEY (or secret_key in the config file, 16+ "
                "characters, e.g. `openssl rand -base64 32`) and restart, so uploaded credentials can be "
                "stored encrypted",
            )
        secrets = _secret_values(data)
        settings = _normalize(provider, data)
        secrets += _secret_values(settings)
        try:
            instance = await services.pool.classes[provider].create(settings, services.pool.transport)
            await instance.aclose()
        except ProviderConfigError as exc:
            raise bad_request(f"{_scrub(str(exc), secrets)}") from None
        fp, env, expires, public = describe(provider, settings)
        meta = await services.creds.put(
            app.id, provider, settings, fingerprint=fp, environment=env, expires_at=expires
        )
        await _lift_quarantine(services, app.id, provider)
        return CredentialEnvelope(
            CredentialOut(
                provider=provider,
                source="api",
                fingerprint=meta.fingerprint,
                environment=meta.environment,
                updated_at=rfc3339(meta.updated_at),
                expires_at=rfc3339(meta.expires_at),
                version=meta.version,
                vapid_public_key=public,
            )
        )

    @delete(
        "/{provider:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete an uploaded credential",
        responses=error_responses(400, 401, 404),
    )
    async def delete_credential(self, provider: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        if provider not in KNOWN_PROVIDERS:
            raise not_found("provider", provider)
        if not await services.creds.delete(app.id, provider):
            raise not_found("uploaded credential for", provider)
        await _lift_quarantine(services, app.id, provider)


async def _lift_quarantine(services: Services, app_id: str, provider: str) -> None:
    """A new credential deserves a fresh start: close the pair's breaker and wake its deferred
    work now instead of after the cooldown (a still-bad credential re-opens it at once)."""
    async with services.db.write() as conn:
        await ProviderHealthStore(services.db).reset(conn, app_id, provider)
    if services.engine is not None:
        services.engine.guards.quarantine.forget(app_id, provider)
        services.engine.notify()
