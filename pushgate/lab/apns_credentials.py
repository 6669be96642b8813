"""APNs credentials the lab owns: the team's ``.p8`` signing key, and a small private PKI.

The lab plays Apple, so it keeps the public half of the signing key (to verify provider JWTs)
and the CA that signs both its TLS server certificate (which pushgate trusts through
``apns.ca_file``) and an APNs-style client certificate for certificate auth (``.p12`` with a
password, and the same as PEM). Files are reused when present, so a restarted lab keeps an
existing pushgate config valid; the server certificate is re-issued each time because its
names follow the address the lab listens on.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BUNDLE_ID",
    "CERT_PASSWORD",
    "ApnsLabCredentials",
    "apns_config_snippet",
    "generate_apns",
    "load_or_generate_apns",
    "write_apns",
]

BUNDLE_ID = "com.pushgate.lab"
CERT_PASSWORD = "pushgate-lab"
KEY_FILE = "apns-key.p8"
META_FILE = "apns.json"
CA_FILE = "apns-ca.pem"
CA_KEY_FILE = "apns-ca-key.pem"
SERVER_CERT_FILE = "apns-server.pem"
SERVER_KEY_FILE = "apns-server-key.pem"
CLIENT_P12_FILE = "apns-client.p12"
CLIENT_PEM_FILE = "apns-client.pem"

_UID_OID = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")
_ALNUM = string.ascii_uppercase + string.digits


def _apple_id() -> str:
    """Key ids and team ids are 10 upper-case alphanumerics at Apple."""
    return "".join(secrets.choice(_ALNUM) for _ in range(10))


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(slots=True)
class ApnsLabCredentials:
    key: ec.EllipticCurvePrivateKey
    key_id: str
    team_id: str
    bundle_id: str
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    client_cert: x509.Certificate
    client_key: ec.EllipticCurvePrivateKey
    server_cert: x509.Certificate | None = None
    server_key: ec.EllipticCurvePrivateKey | None = None
    #: Where the simulator listens: HTTP/2 over TLS, and cleartext h2c.
    tls_url: str = ""
    h2c_url: str = ""
    directory: Path | None = None

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.key.public_key()

    def path(self, name: str) -> Path:
        assert self.directory is not None, "credentials were not written to a directory"
        return self.directory / name

    def issue_server_cert(self, hosts: list[str]) -> None:
        """(Re-)issue the TLS server certificate for ``hosts`` (names or IP literals)."""
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        addresses = {"127.0.0.1", "::1"}
        for host in hosts:
            host = host.strip("[]")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                if host and host != "localhost":
                    names.append(x509.DNSName(host))
            else:
                addresses.add(host)
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        self.server_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.push.apple.com (lab)")]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.server_key = key

    def client_p12(self) -> bytes:
        """The client certificate as Apple hands it out: a password-protected ``.p12``."""
        return pkcs12.serialize_key_and_certificates(
            b"pushgate-lab-apns",
            self.client_key,
            self.client_cert,
            None,
            serialization.BestAvailableEncryption(CERT_PASSWORD.encode()),
        )

    def public_document(self) -> dict[str, str]:
        """What ``GET /credentials`` shows about APNs (no private key)."""
        return {
            "key_id": self.key_id,
            "team_id": self.team_id,
            "bundle_id": self.bundle_id,
            "tls_url": self.tls_url,
            "h2c_url": self.h2c_url,
            "ca_pem": _pem_cert(self.ca_cert).decode("ascii"),
        }


def _issue_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pushgate lab APNs CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_client(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, bundle_id: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An "Apple Push Services" certificate: subject UID = the bundle id it may push to."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(_UID_OID, bundle_id),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"Apple Push Services: {bundle_id}"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def generate_apns(bundle_id: str = BUNDLE_ID) -> ApnsLabCredentials:
    """Fresh in-memory APNs credentials (key, ids, CA, client certificate)."""
    ca_cert, ca_key = _issue_ca()
    client_cert, client_key = _issue_client(ca_cert, ca_key, bundle_id)
    return ApnsLabCredentials(
        key=ec.generate_private_key(ec.SECP256R1()),
        key_id=_apple_id(),
        team_id=_apple_id(),
        bundle_id=bundle_id,
        ca_cert=ca_cert,
        ca_key=ca_key,
        client_cert=client_cert,
        client_key=client_key,
    )


def _load_ec(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def load_or_generate_apns(directory: Path) -> ApnsLabCredentials:
    """Reuse the APNs files in ``directory`` when they are all there, else generate new ones."""
    needed = (KEY_FILE, META_FILE, CA_FILE, CA_KEY_FILE, CLIENT_PEM_FILE)
    if not all((directory / n).is_file() for n in needed):
        return generate_apns()
    meta = json.loads((directory / META_FILE).read_text())
    client_pem = (directory / CLIENT_PEM_FILE).read_bytes()
    client_key = serialization.load_pem_private_key(client_pem, None)
    if not isinstance(client_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / CLIENT_PEM_FILE}: not an EC private key")
    return ApnsLabCredentials(
        key=_load_ec(directory / KEY_FILE),
        key_id=meta["key_id"],
        team_id=meta["team_id"],
        bundle_id=meta.get("bundle_id", BUNDLE_ID),
        ca_cert=x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes()),
        ca_key=_load_ec(directory / CA_KEY_FILE),
        client_cert=x509.load_pem_x509_certificates(client_pem)[0],
        client_key=client_key,
    )


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(data)


def write_apns(directory: Path, creds: ApnsLabCredentials, tls_url: str, h2c_url: str) -> None:
    """Write every APNs file into ``directory`` and record where the simulator listens."""
    from urllib.parse import urlsplit

    creds.directory = directory
    creds.tls_url = tls_url.rstrip("/")
    creds.h2c_url = h2c_url.rstrip("/")
    creds.issue_server_cert([urlsplit(tls_url).hostname or "127.0.0.1"])
    assert creds.server_cert is not None and creds.server_key is not None
    _write_private(directory / KEY_FILE, _pem_key(creds.key))
    meta = {
        "key_id": creds.key_id,
        "team_id": creds.team_id,
        "bundle_id": creds.bundle_id,
        "certificate_password": CERT_PASSWORD,
        "tls_url": creds.tls_url,
        "h2c_url": creds.h2c_url,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (directory / CA_FILE).write_bytes(_pem_cert(creds.ca_cert))
    _write_private(directory / CA_KEY_FILE, _pem_key(creds.ca_key))
    (directory / SERVER_CERT_FILE).write_bytes(_pem_cert(creds.server_cert) + _pem_cert(creds.ca_cert))
    _write_private(directory / SERVER_KEY_FILE, _pem_key(creds.server_key))
    _write_private(directory / CLIENT_P12_FILE, creds.client_p12())
    _write_private(directory / CLIENT_PEM_FILE, _pem_cert(creds.client_cert) + _pem_key(creds.client_key))


def apns_config_snippet(creds: ApnsLabCredentials) -> str:
    """The ``[apns]`` section pointing pushgate at the simulator.

    Production devices go over HTTP/2 with TLS (the real thing: ALPN, the lab CA in ``ca_file``);
    devices registered with ``environment = "sandbox"`` go over cleartext h2c, so both transports
    stay exercised. Certificate auth is shown commented out.
    """
    if creds.directory is None:
        return ""

    def q(value: object) -> str:
        return json.dumps(str(value))

    return (
        "\n[apns]\n"
        "# Token auth against the lab's APNs simulator (HTTP/2 over TLS, self-signed lab CA).\n"
        f"key_file = {q(creds.path(KEY_FILE))}\n"
        f"key_id = {q(creds.key_id)}\n"
        f"team_id = {q(creds.team_id)}\n"
        f"bundle_id = {q(creds.bundle_id)}\n"
        'environment = "production"\n'
        f"base_url = {q(creds.tls_url)}\n"
        "# Sandbox devices reach the same simulator over cleartext HTTP/2 (h2c, prior knowledge);\n"
        f"# use {q(creds.tls_url)} here too to keep everything on TLS.\n"
        f"sandbox_base_url = {q(creds.h2c_url)}\n"
        f"ca_file = {q(creds.path(CA_FILE))}\n"
        "# Certificate auth instead: remove key_file, key_id and team_id, then set\n"
        f"# certificate_file = {q(creds.path(CLIENT_P12_FILE))}\n"
        f'# certificate_password = "{CERT_PASSWORD}"\n'
    )


def default_apns_urls(base_url: str) -> tuple[str, str]:
    """``(tls_url, h2c_url)`` next to the lab's HTTP port: port + 1 (TLS) and port + 2 (h2c)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or 8687
    return f"https://{host}:{port + 1}", f"http://{host}:{port + 2}"
