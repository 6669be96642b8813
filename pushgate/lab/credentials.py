"""Credentials shared between the lab and the pushgate instance it serves.

The lab plays Google's OAuth server, so it must own the service-account key pair (it keeps
the public half to verify assertions), and it mints browser subscriptions, so it needs a
default VAPID applicationServerKey. Writing them to a directory, and reusing them when they
are already there, lets a restarted lab keep an existing pushgate config valid.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushgate.lab.apns_credentials import (
    CA_FILE,
    ApnsLabCredentials,
    apns_config_snippet,
    default_apns_urls,
    generate_apns,
    load_or_generate_apns,
    write_apns,
)

PROJECT_ID = "pushgate-lab"
CLIENT_EMAIL = "pushgate-lab@pushgate-lab.iam.gserviceaccount.com"
VAPID_SUBJECT = "mailto:lab@example.com"

SERVICE_ACCOUNT_FILE = "fcm-service-account.json"
VAPID_PRIVATE_FILE = "vapid-private.txt"
VAPID_PUBLIC_FILE = "vapid-public.txt"
CLIENT_SECRETS_FILE = "client-secrets.json"
CONFIG_SNIPPET_FILE = "pushgate-lab.toml"


def b64url_encode(raw: bytes) -> str:
    """Base64url without padding, the encoding every Web Push key travels in."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url, tolerating missing or present padding (senders differ)."""
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _wns_package_sid() -> str:
    """A Package SID shaped like Partner Center's (``ms-app://s-1-15-2-…``)."""
    parts = "-".join(str(secrets.randbelow(2**32)) for _ in range(7))
    return f"ms-app://s-1-15-2-{parts}"


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    """Where the simulated services listen, as the real ones split across hosts and protocols.

    ``h2`` serves what the real services offer over HTTP/2 as well as 1.1 (FCM, its OAuth token
    endpoint, Web Push push services); ``http1`` what they serve over HTTP/1.1 only (HMS, WNS,
    MiPush). Both are TLS origins signed by the lab CA, except in ``--plain`` mode, where both
    are the lab's cleartext control origin.
    """

    h2: str
    http1: str

    @classmethod
    def plain(cls, base_url: str) -> ServiceUrls:
        base_url = base_url.rstrip("/")
        return cls(base_url, base_url)

    @property
    def tls(self) -> bool:
        return self.h2.startswith("https://")


#: Fields of LabCredentials kept in CLIENT_SECRETS_FILE so a restarted lab keeps them.
CLIENT_SECRET_FIELDS = (
    "hms_app_id",
    "hms_client_secret",
    "wns_package_sid",
    "wns_client_secret",
    "mipush_app_secret",
    "mipush_package_name",
)


@dataclass(slots=True)
class LabCredentials:
    """Everything the lab needs to verify callers, plus what pushgate needs to call it."""

    service_account: dict[str, Any]
    fcm_public_key: rsa.RSAPublicKey
    vapid_private_key: ec.EllipticCurvePrivateKey
    directory: Path | None = None
    #: The origins of the simulated services (None: the cleartext control origin, as ``--plain``).
    services: ServiceUrls | None = None
    #: HMS, WNS and MiPush: shared secrets the lab checks and pushgate presents (CLIENT_SECRETS_FILE).
    hms_app_id: str = field(default_factory=lambda: str(100_000_000 + secrets.randbelow(900_000_000)))
    hms_client_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    wns_package_sid: str = field(default_factory=_wns_package_sid)
    wns_client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    mipush_app_secret: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    mipush_package_name: str = "com.example.pushgate.lab"
    #: APNs: the team's .p8 key, key/team/bundle ids, and the lab CA behind the TLS listener.
    apns: ApnsLabCredentials = field(default_factory=generate_apns)

    @property
    def vapid_public_raw(self) -> bytes:
        """The 65-byte uncompressed point browsers receive as applicationServerKey."""
        return self.vapid_private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def vapid_public_b64(self) -> str:
        return b64url_encode(self.vapid_public_raw)

    @property
    def vapid_private_b64(self) -> str:
        return b64url_encode(self.vapid_private_key.private_numbers().private_value.to_bytes(32, "big"))

    @property
    def urls(self) -> ServiceUrls:
        return self.services or ServiceUrls.plain(str(self.service_account["base_url"]))

    def public_document(self) -> dict[str, Any]:
        """The `GET /credentials` body: lets a client use an in-memory lab without files."""
        return {
            "services": {"h2": self.urls.h2, "http1": self.urls.http1},
            "fcm_service_account": self.service_account,
            "vapid_public_key": self.vapid_public_b64,
            "vapid_private_key": self.vapid_private_b64,
            "vapid_subject": VAPID_SUBJECT,
            **{name: getattr(self, name) for name in CLIENT_SECRET_FIELDS},
            "apns": self.apns.public_document(),
        }


def _service_account(private_key: rsa.RSAPrivateKey, base_url: str) -> dict[str, Any]:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return {
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": str(secrets.randbelow(10**20) + 10**20),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": f"{base_url}/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{CLIENT_EMAIL}",
        "universe_domain": "googleapis.com",
        "base_url": base_url,
    }


def generate_credentials(base_url: str, services: ServiceUrls | None = None) -> LabCredentials:
    """Fresh in-memory credentials, for a lab started without a credentials directory."""
    services = services or ServiceUrls.plain(base_url)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return LabCredentials(
        service_account=_service_account(rsa_key, services.h2),
        fcm_public_key=rsa_key.public_key(),
        vapid_private_key=ec.generate_private_key(ec.SECP256R1()),
        services=services,
    )


def _load_vapid_private(raw_b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(raw_b64), "big"), ec.SECP256R1())


def _load_existing(directory: Path, services: ServiceUrls) -> LabCredentials | None:
    """Reuse keys already in `directory`; only the URLs follow the current address."""
    sa_path = directory / SERVICE_ACCOUNT_FILE
    vapid_path = directory / VAPID_PRIVATE_FILE
    if not (sa_path.is_file() and vapid_path.is_file()):
        return None
    service_account = json.loads(sa_path.read_text())
    private_key = serialization.load_pem_private_key(service_account["private_key"].encode(), None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError(f"{sa_path}: private_key is not an RSA key")
    service_account["token_uri"] = f"{services.h2}/token"
    service_account["base_url"] = services.h2
    return LabCredentials(
        service_account=service_account,
        fcm_public_key=private_key.public_key(),
        vapid_private_key=_load_vapid_private(vapid_path.read_text()),
        services=services,
    )


def config_snippet(creds: LabCredentials, service_account_path: Path) -> str:
    """The TOML sections that point pushgate's default app at the lab, and nothing else.

    When the services are served over TLS, ``[engine] ca_file`` makes pushgate's provider
    transport trust the lab CA, so the production transport (TLS, HTTP/2 by ALPN) is what runs.
    """
    engine = ""
    if creds.urls.tls and creds.apns.directory is not None:
        engine = (
            "[engine]\n"
            "# Provider connections trust the lab's CA (its services speak TLS, as the real ones do).\n"
            f"ca_file = {json.dumps(str(creds.apns.path(CA_FILE)))}\n"
            "\n"
        )
    return (
        "[devices]\n"
        "allow_loopback_endpoints = true\n"
        "\n" + engine + "[fcm]\n"
        f"service_account_file = {json.dumps(str(service_account_path))}\n"
        "\n"
        "[webpush]\n"
        f'vapid_subject = "{VAPID_SUBJECT}"\n'
        f'vapid_private_key = "{creds.vapid_private_b64}"\n'
        f'vapid_public_key = "{creds.vapid_public_b64}"\n'
        + client_secret_sections(creds, creds.urls.http1)
        + apns_config_snippet(creds.apns)
    )


def client_secret_sections(creds: LabCredentials, base_url: str) -> str:
    """``[hms]``, ``[wns]`` and ``[mipush]`` pointing at the lab's simulators of those services."""
    return (
        "\n[hms]\n"
        f'app_id = "{creds.hms_app_id}"\n'
        f'client_secret = "{creds.hms_client_secret}"\n'
        f'base_url = "{base_url}/hms"\n'
        f'token_url = "{base_url}/hms/oauth2/v3/token"\n'
        "\n[wns]\n"
        f'package_sid = "{creds.wns_package_sid}"\n'
        f'client_secret = "{creds.wns_client_secret}"\n'
        f'token_url = "{base_url}/wns/accesstoken.srf"\n'
        "\n[mipush]\n"
        f'app_secret = "{creds.mipush_app_secret}"\n'
        f'package_name = "{creds.mipush_package_name}"\n'
        f'base_url = "{base_url}/mipush"\n'
    )


def write_credentials(
    dir: Path,
    base_url: str,
    apns_urls: tuple[str, str] | None = None,
    services: ServiceUrls | None = None,
) -> LabCredentials:
    """Create (or reuse) the lab's credentials in `dir` and write pushgate's config snippet.

    Pure file work, no server: callers can prepare a config before the lab starts.
    `base_url` is the lab's control origin, e.g. ``http://127.0.0.1:8687``; `apns_urls` are the
    APNs simulator's ``(https, h2c)`` origins (default: the next two ports); `services` the
    other simulators' origins (default: `base_url` itself, cleartext, as ``--plain``).
    """
    directory = dir.expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    base_url = base_url.rstrip("/")
    services = services or ServiceUrls.plain(base_url)
    creds = _load_existing(directory, services) or generate_credentials(base_url, services)
    creds.directory = directory
    sa_path = directory / SERVICE_ACCOUNT_FILE
    _write_private(sa_path, json.dumps(creds.service_account, indent=2) + "\n")
    _write_private(directory / VAPID_PRIVATE_FILE, creds.vapid_private_b64 + "\n")
    (directory / VAPID_PUBLIC_FILE).write_text(creds.vapid_public_b64 + "\n")
    _load_client_secrets(creds, directory / CLIENT_SECRETS_FILE)
    _write_private(
        directory / CLIENT_SECRETS_FILE,
        json.dumps({name: getattr(creds, name) for name in CLIENT_SECRET_FIELDS}, indent=2) + "\n",
    )
    creds.apns = load_or_generate_apns(directory)
    write_apns(directory, creds.apns, *(apns_urls or default_apns_urls(base_url)))
    (directory / CONFIG_SNIPPET_FILE).write_text(config_snippet(creds, sa_path))
    return creds


def _load_client_secrets(creds: LabCredentials, path: Path) -> None:
    """Reuse HMS/WNS/MiPush secrets written by an earlier run (a missing file keeps the new ones)."""
    if not path.is_file():
        return
    stored = json.loads(path.read_text())
    for name in CLIENT_SECRET_FIELDS:
        if isinstance(stored.get(name), str) and stored[name]:
            setattr(creds, name, stored[name])


def _write_private(path: Path, text: str) -> None:
    """Private keys are readable by the owner only, as a real key file would be."""
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(text)
