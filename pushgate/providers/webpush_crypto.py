"""Web Push message encryption: RFC 8291 over RFC 8188's ``aes128gcm``, on ``cryptography``.

It used to go through http_ece, which builds three ``HKDF`` objects, re-serialises both public
keys and runs ABC ``isinstance`` checks for every message: about a quarter of the cost of an
encryption that is itself the largest single cost of a fan-out (docs/performance.md, "Web Push
encryption"). The steps are short, so they are written here on ``cryptography``'s ECDH and
AES-GCM. The RFC 8291 Appendix A vector (byte for byte, every intermediate value) and a
decryption of this module's output by http_ece guard them (tests/unit/test_webpush_crypto.py).

What is computed once and what never is:

- Once per subscription (:class:`Recipient`, cached by :func:`recipient`): the parsed P-256
  point (checked to be on the curve, RFC 8291 §7) and its 65 uncompressed bytes (~340 bytes
  an entry, at most 16,384 entries for raw points and as many for key objects).
- Never: the ephemeral key pair and the salt. RFC 8291 §3.1 has the application server
  generate "a new ECDH key pair" when sending a push message, and a salt must never repeat
  under the same input keying material (RFC 8188 §2.1). One key pair for a whole batch would
  also show the push service which subscriptions received the same message (the key is the
  ``keyid`` in every body, in the clear), and one leaked private key would open every message
  of the batch. It would not save the ECDH, the dominant cost, which needs each subscription's
  own key anyway: only the key generation (~15 µs of ~90).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "MAX_PLAINTEXT",
    "RECORD_SIZE",
    "Recipient",
    "derive_key_and_nonce",
    "encrypt",
    "load_recipient",
    "recipient",
]

#: The ``rs`` header field. One record of this size carries a push message (RFC 8291 §4).
RECORD_SIZE = 4096
SALT_LENGTH = 16
AUTH_SECRET_LENGTH = 16
_TAG_LENGTH = 16
#: What one record may carry: RFC 8291 §4 wants ``rs`` greater than plaintext + the 0x02
#: delimiter + the GCM tag. Push services take 4,096 bytes of body, which leaves 3,993
#: (admission's limit, domain/render.py), so this only guards callers that skip admission.
MAX_PLAINTEXT = RECORD_SIZE - 1 - _TAG_LENGTH - 1

_CURVE = ec.SECP256R1()
_ECDH = ec.ECDH()
_KEY_INFO = b"WebPush: info\x00"
# HKDF-Expand of one SHA-256 block is HMAC(PRK, info || 0x01) (RFC 5869 §2.3): the counter byte
# is appended here once.
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
# rs (4 bytes, big-endian) and idlen (65: the uncompressed point is the whole keyid, RFC 8291 §4).
_RS_IDLEN = RECORD_SIZE.to_bytes(4, "big") + bytes([65])
_DELIMITER = b"\x02"


@dataclass(frozen=True, slots=True, eq=False)
class Recipient:
    """One subscription's half of the key agreement, prepared once and reused per message."""

    public_key: ec.EllipticCurvePublicKey
    #: ``ua_public``: the 65-byte uncompressed point.
    public_bytes: bytes
    auth_secret: bytes


def _prepare(public_key: ec.EllipticCurvePublicKey, public_bytes: bytes, auth_secret: bytes) -> Recipient:
    if len(auth_secret) != AUTH_SECRET_LENGTH:
        raise ValueError(f"auth secret: must be {AUTH_SECRET_LENGTH} bytes, got {len(auth_secret)}")
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError(f"subscription key: must be on P-256, not {public_key.curve.name}")
    return Recipient(public_key, public_bytes, auth_secret)


def load_recipient(ua_public: bytes, auth_secret: bytes) -> Recipient:
    """The :class:`Recipient` for a raw point and secret, uncached: for a caller that keeps its
    own cache of parsed subscriptions (webpush.py), so the point is loaded once and held once.
    Raises :class:`ValueError` like :func:`recipient`."""
    if len(ua_public) != 65 or ua_public[0] != 0x04:
        raise ValueError("subscription key: must be a 65-byte uncompressed P-256 point (0x04 ...)")
    # from_encoded_point refuses a point that is not on the curve (RFC 8291 §7 requires that check).
    key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, ua_public)
    return _prepare(key, ua_public, auth_secret)


_from_bytes = functools.lru_cache(maxsize=16384)(load_recipient)


class _Identity:
    """Hashes a key object by identity: cryptography's key objects are neither hashable nor
    weak-referenceable. The cache entry holds the object, so its ``id`` cannot be reused by
    another object while the entry exists."""

    __slots__ = ("key",)

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        self.key = key

    def __hash__(self) -> int:
        return id(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.key is self.key


# For callers that hold a parsed key object (encrypt_aes128gcm and its tests): the same object
# comes back each time, and serialising it costs ~7 µs. The provider itself keeps a Recipient
# per subscription (load_recipient), so it fills neither cache.
@functools.lru_cache(maxsize=16384)
def _from_object(key: _Identity, auth_secret: bytes) -> Recipient:
    raw = key.key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return _prepare(key.key, raw, auth_secret)


def recipient(ua_public: bytes | ec.EllipticCurvePublicKey, auth_secret: bytes) -> Recipient:
    """The prepared :class:`Recipient` for a subscription key (raw point or parsed) and secret.

    Cached (16,384 entries each way), so the point is parsed, checked and serialised once per
    subscription rather than once per message. Raises :class:`ValueError` for a point that is
    not an uncompressed P-256 point on the curve or an auth secret that is not 16 bytes.
    """
    if isinstance(ua_public, bytes):
        return _from_bytes(ua_public, auth_secret)
    return _from_object(_Identity(ua_public), auth_secret)


# HMAC-SHA-256 (RFC 2104) on hashlib: every key here is 16 or 32 bytes, under SHA-256's 64-byte
# block, so it is zero-padded and never hashed first. hmac.digest would do the same in one call
# but looks SHA-256 up by name inside OpenSSL each time (~2 µs a call); hashlib keeps the fetched
# digest. The five HMACs of a message take 6.3 µs this way against 10.0 µs with hmac.digest and
# 11 µs with cryptography's HKDF objects (three of them, as http_ece builds). The Appendix A
# intermediate values and a comparison with hmac.digest test it (tests/unit/test_webpush_crypto.py).
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_sha256 = hashlib.sha256


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    if len(key) > 64:  # a longer key would have to be hashed first (RFC 2104 §2); none is here
        raise ValueError("HMAC key longer than the SHA-256 block")
    padded = key.ljust(64, b"\x00")
    return _sha256(padded.translate(_OPAD) + _sha256(padded.translate(_IPAD) + data).digest()).digest()


def derive_key_and_nonce(
    ecdh_secret: bytes, auth_secret: bytes, key_info: bytes, salt: bytes
) -> tuple[bytes, bytes]:
    """``(CEK, NONCE)`` from the ECDH secret, as RFC 8291 §3.4 spells it out in HMAC steps.

    ``key_info`` is ``"WebPush: info" || 0x00 || ua_public || as_public``.
    """
    prk_key = _hmac_sha256(auth_secret, ecdh_secret)  # HKDF-Extract(auth_secret, ecdh_secret)
    ikm = _hmac_sha256(prk_key, key_info + b"\x01")  # HKDF-Expand(PRK_key, key_info, 32)
    prk = _hmac_sha256(salt, ikm)  # HKDF-Extract(salt, IKM)
    # HKDF-Expand(PRK, cek_info, 16) and (PRK, nonce_info, 12) share PRK's padded key.
    padded = prk.ljust(64, b"\x00")
    inner, outer = padded.translate(_IPAD), padded.translate(_OPAD)
    cek = _sha256(outer + _sha256(inner + _CEK_INFO).digest()).digest()[:16]
    nonce = _sha256(outer + _sha256(inner + _NONCE_INFO).digest()).digest()[:12]
    return cek, nonce


def encrypt(
    plaintext: bytes,
    to: Recipient,
    *,
    salt: bytes | None = None,
    private_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """One push message body: ``salt || rs || idlen || as_public || AES-128-GCM(plaintext || 0x02)``.

    ``salt`` and ``private_key`` exist so a test can reproduce RFC 8291 Appendix A; in
    production both are ``None`` and fresh for every message (see the module docstring).
    Raises :class:`ValueError` when the plaintext does not fit one record.
    """
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(
            f"Web Push plaintext of {len(plaintext)} bytes does not fit one aes128gcm record "
            f"(at most {MAX_PLAINTEXT}; push services take 3993, a 4096-byte body)"
        )
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    elif len(salt) != SALT_LENGTH:
        raise ValueError(f"salt: must be {SALT_LENGTH} bytes, got {len(salt)}")
    if private_key is None:
        private_key = ec.generate_private_key(_CURVE)
    as_public = private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    ecdh_secret = private_key.exchange(_ECDH, to.public_key)
    key_info = _KEY_INFO + to.public_bytes + as_public
    cek, nonce = derive_key_and_nonce(ecdh_secret, to.auth_secret, key_info, salt)
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + _DELIMITER, None)
    return salt + _RS_IDLEN + as_public + ciphertext
