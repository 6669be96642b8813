"""APNs credentials: the ``[apns]`` settings and turning them into what the protocol needs.

Split from ``apns.py`` (the HTTP/2 protocol) because credential loading is its own subject:
token auth reads a ``.p8`` signing key (file or inline PEM); certificate auth reads a ``.p12``
(file or base64, with a password) or a PEM certificate plus its key (one file, two files, or
inline), and unpacks it into the PEM identity rustls accepts. Everything here runs once, when
a provider is built, and every error names the key that holds the bad value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from pushgate.providers.base import Concurrency, CredentialInfo, ProviderConfigError, ProviderSettings

log = logging.getLogger("pushgate.providers.apns")

_UID_OID = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")

#: An APNs host: ``https://…``, or ``http://…`` for h2c (the provider lab without TLS).
ApnsUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://")]


class ApnsSettings(ProviderSettings, forbid_unknown_fields=True, omit_defaults=True):
    """APNs: token auth (.p8 + key id + team id) or certificate auth (.p12 / PEM)."""

    #: Path of the .p8 signing key, or the PEM text itself in ``key``.
    key_file: str | None = None
    key: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    #: The app's bundle id: the ``apns-topic`` (suffixes for voip etc. are added per push type).
    bundle_id: str | None = None
    #: Certificate auth: a .p12 (with ``certificate_password``) or a PEM certificate + key.
    certificate_file: str | None = None
    certificate_password: str | None = None
    certificate_key_file: str | None = None
    #: Certificate auth inline (credentials uploaded through the API): a base64 .p12, or PEM
    #: text holding the certificate and its unencrypted private key.
    certificate_p12_base64: str | None = None
    certificate_pem: str | None = None
    #: Which APNs host devices without an ``environment`` use.
    environment: Literal["production", "sandbox"] = "production"
    #: Override the hosts (the provider lab).
    base_url: ApnsUrl | None = None
    sandbox_base_url: ApnsUrl | None = None
    #: CA bundle to trust for ``base_url`` (the lab's self-signed certificate).
    ca_file: str | None = None
    #: The same CA bundle as PEM text (for credentials uploaded through the API).
    ca_pem: str | None = None
    concurrency: Concurrency = 500


def _read_bytes(path: str) -> bytes:
    with open(os.path.expanduser(path), "rb") as fh:
        return fh.read()


async def _load_file(key: str, path: str) -> bytes:
    try:
        return await asyncio.to_thread(_read_bytes, path)
    except FileNotFoundError:
        raise ProviderConfigError(f"{key}: file not found: {path}") from None
    except OSError as exc:
        raise ProviderConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def load_signing_key(pem: bytes, key: str) -> ec.EllipticCurvePrivateKey:
    """Parse a ``.p8`` (PKCS#8 PEM) APNs signing key; it must be a P-256 EC key."""
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ProviderConfigError(f"{key}: not a PEM private key (a .p8 file from Apple): {exc}") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise ProviderConfigError(f"{key}: must be a P-256 (ES256) EC key, as Apple's .p8 keys are")
    return loaded


class ClientIdentity(msgspec.Struct, frozen=True):
    """A client certificate ready for the TLS stack, plus what pushgate reports about it."""

    pem: bytes
    not_after: float
    #: The certificate's subject UID: the bundle id a single-topic APNs certificate is for.
    uid: str | None


def load_identity(
    *, p12: bytes | None = None, password: str | None = None, pem: bytes | None = None, key: str
) -> ClientIdentity:
    """Turn a ``.p12`` (with password) or a PEM certificate + key into a PEM identity.

    rustls takes PEM only, so a ``.p12`` is unpacked here with cryptography's PKCS#12 reader.
    """
    if p12 is not None:
        try:
            priv, cert, extra = pkcs12.load_key_and_certificates(
                p12, password.encode() if password is not None else None
            )
        except ValueError as exc:
            raise ProviderConfigError(
                f"{key}: cannot open the .p12 (wrong certificate_password or not PKCS#12): {exc}"
            ) from None
        if priv is None or cert is None:
            raise ProviderConfigError(f"{key}: the .p12 must hold a certificate and its private key")
        chain = list(extra or ())
    else:
        assert pem is not None
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ProviderConfigError(f"{key}: no PEM certificate found") from None
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ProviderConfigError(
                f"{key}: no unencrypted PEM private key found (give certificate_key_file)"
            ) from None
        cert, chain, priv = certs[0], certs[1:], loaded
    if not isinstance(priv, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ProviderConfigError(f"{key}: the private key must be RSA or EC")
    key_pem = priv.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out = key_pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
    uids = cert.subject.get_attributes_for_oid(_UID_OID)
    uid = uids[0].value if uids else None
    if isinstance(uid, bytes):
        uid = uid.decode("utf-8", "replace")
    return ClientIdentity(pem=out, not_after=cert.not_valid_after_utc.timestamp(), uid=uid)


@dataclass(frozen=True, slots=True)
class ApnsAuth:
    """How a provider authenticates: exactly one of ``token_key`` and ``identity``."""

    bundle_id: str
    #: Token auth: ``(signing key, key id, team id)`` for the ES256 JWT.
    token_key: tuple[ec.EllipticCurvePrivateKey, str, str] | None = None
    #: Certificate auth: the client certificate presented in the TLS handshake.
    identity: ClientIdentity | None = None


def _given(value: str | None) -> str | None:
    return value or None


async def load_auth(s: ApnsSettings) -> ApnsAuth:
    """Token auth or certificate auth from ``s``; giving both, or neither, is an error."""
    token_auth = bool(s.key_file or s.key)
    cert_auth = bool(s.certificate_file or s.certificate_p12_base64 or s.certificate_pem)
    if token_auth and cert_auth:
        raise ProviderConfigError(
            "apns: give either key_file/key (token auth) or a certificate (certificate auth), not both"
        )
    if token_auth:
        return await _token_auth(s)
    if cert_auth:
        return await _certificate_auth(s)
    raise ProviderConfigError(
        "apns.key_file: required (with key_id, team_id, bundle_id), "
        "or apns.certificate_file for certificate auth"
    )


async def _token_auth(s: ApnsSettings) -> ApnsAuth:
    src = "apns.key_file" if s.key_file else "apns.key"
    pem = await _load_file(src, s.key_file) if s.key_file else (s.key or "").encode()
    private_key = load_signing_key(pem, src)
    if not s.key_id:
        raise ProviderConfigError(f"apns.key_id: required with {src.removeprefix('apns.')}")
    if not s.team_id:
        raise ProviderConfigError(f"apns.team_id: required with {src.removeprefix('apns.')}")
    if not s.bundle_id:
        raise ProviderConfigError("apns.bundle_id: required with token auth (it is the apns-topic)")
    return ApnsAuth(bundle_id=s.bundle_id, token_key=(private_key, s.key_id, s.team_id))


async def _certificate_auth(s: ApnsSettings) -> ApnsAuth:
    password = _given(s.certificate_password)
    if s.certificate_file:
        raw = await _load_file("apns.certificate_file", s.certificate_file)
        if s.certificate_key_file:
            raw += b"\n" + await _load_file("apns.certificate_key_file", s.certificate_key_file)
        if b"-----BEGIN" in raw:
            identity = load_identity(pem=raw, key="apns.certificate_file")
        else:
            identity = load_identity(p12=raw, password=password, key="apns.certificate_file")
    elif s.certificate_p12_base64:
        try:
            p12 = base64.b64decode(s.certificate_p12_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ProviderConfigError("apns.certificate_p12_base64: not valid base64") from None
        identity = load_identity(p12=p12, password=password, key="apns.certificate_p12_base64")
    else:
        identity = load_identity(pem=(s.certificate_pem or "").encode(), key="apns.certificate_pem")
    bundle_id = s.bundle_id or identity.uid
    if not bundle_id:
        raise ProviderConfigError(
            "apns.bundle_id: required (the certificate's subject has no UID to take it from)"
        )
    if identity.not_after < time.time():
        log.warning("apns[%s]: the client certificate has expired", bundle_id)
    return ApnsAuth(bundle_id=bundle_id, identity=identity)


async def load_ca(s: ApnsSettings) -> bytes | None:
    """The extra CA bundle to trust (``ca_file``, or ``ca_pem`` uploaded through the API)."""
    if not (s.ca_file or s.ca_pem):
        return None
    key_name = "apns.ca_file" if s.ca_file else "apns.ca_pem"
    ca_pem = await _load_file(key_name, s.ca_file) if s.ca_file else str(s.ca_pem).encode()
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise ProviderConfigError(f"{key_name}: no PEM certificate found") from None
    return ca_pem


def _inline_certificate(s: ApnsSettings) -> x509.Certificate | None:
    """The client certificate of inline certificate credentials, for its expiry."""
    try:
        if s.certificate_p12_base64:
            password = s.certificate_password
            _, cert, _ = pkcs12.load_key_and_certificates(
                base64.b64decode(s.certificate_p12_base64), password.encode() if password else None
            )
            return cert
        if s.certificate_pem:
            return x509.load_pem_x509_certificate(s.certificate_pem.encode())
    except (ValueError, TypeError):
        return None
    return None


def describe(s: ApnsSettings) -> CredentialInfo:
    """The certificate's fingerprint and expiry (certificate auth), or the key and team ids."""
    cert = _inline_certificate(s)
    if cert is not None:
        fp = "cert " + cert.fingerprint(cert.signature_hash_algorithm or hashes.SHA256())[:8].hex()
        return CredentialInfo(fp, s.environment, cert.not_valid_after_utc.timestamp())
    return CredentialInfo(f"key {s.key_id or '?'} team {s.team_id or '?'}", s.environment)
