"""Web Push encryption against RFC 8291 Appendix A, byte for byte, and round trips.

The encryption is pushgate's own composition of cryptography's primitives
(providers/webpush_crypto.py), so every test that decrypts uses http_ece, an independent
implementation.
"""

from __future__ import annotations

import hmac
import struct

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushgate.domain.render import LIMITS, b64url_decode, b64url_encode
from pushgate.providers import webpush_crypto
from pushgate.providers.webpush import encrypt_aes128gcm, endpoint_origin, load_vapid_private_key

# RFC 8291 Appendix A (https://www.rfc-editor.org/rfc/rfc8291#appendix-A).
PLAINTEXT = "V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24"
AS_PUBLIC = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
AUTH_SECRET = "BTBZMqHH6r4Tts7J_aSIgg"
HEADER = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3"
    "vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
)
CIPHERTEXT = "8pfeW0KbunFT06SuDKoJH9Ql87S1QUrdirN6GcG7sFz1y1sqLgVi1VhjVkHsUoEsbI_0LpXMuGvnzQ"
# Appendix A's intermediate values.
ECDH_SECRET = "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs"
KEY_INFO = (
    "V2ViUHVzaDogaW5mbwAEJXGyvs3942BVGq8e0PTNNmwRzr5VX4m8t7GGpTM5FzFo7OLr4BhZe9MEebhuPI-OztV3"
    "ylkYfpJGmQ22ggCLDgT-M_SrDepxkU21WCP3O1SUj0EwbZIHMtu5pZpTKGSCIA5Zent7wmC6HCJ5mFgJkuk5cwAv"
    "MBKiiujwa7t45ewP"
)
CEK = "oIhVW04MRdy2XN9CiKLxTg"
NONCE = "4h_95klXJ5E_qnoN"
FULL_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_"
    "yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def _key(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(b64), "big"), ec.SECP256R1())


def _pub_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def test_rfc8291_vector_byte_for_byte() -> None:
    as_key = _key(AS_PRIVATE)
    assert b64url_encode(_pub_bytes(as_key)) == AS_PUBLIC
    body = encrypt_aes128gcm(
        b64url_decode(PLAINTEXT),
        b64url_decode(UA_PUBLIC),
        b64url_decode(AUTH_SECRET),
        salt=b64url_decode(SALT),
        private_key=as_key,
    )
    assert len(body) == 144
    assert b64url_encode(body[:86]) == HEADER
    assert b64url_encode(body[86:]) == CIPHERTEXT
    assert b64url_encode(body) == FULL_BODY


def test_rfc8291_vector_accepts_public_key_object() -> None:
    ua_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(UA_PUBLIC))
    body = encrypt_aes128gcm(
        b64url_decode(PLAINTEXT),
        ua_pub,
        b64url_decode(AUTH_SECRET),
        salt=b64url_decode(SALT),
        private_key=_key(AS_PRIVATE),
    )
    assert b64url_encode(body) == FULL_BODY


def test_vector_decrypts_with_ua_private_key() -> None:
    plaintext = http_ece.decrypt(
        b64url_decode(FULL_BODY),
        private_key=_key(UA_PRIVATE),
        auth_secret=b64url_decode(AUTH_SECRET),
        version="aes128gcm",
    )
    assert plaintext == b"When I grow up, I want to be a watermelon"


def test_fresh_salt_and_key_every_message_and_round_trip() -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    auth = b"0123456789abcdef"
    a = encrypt_aes128gcm(b"hello", _pub_bytes(browser), auth)
    b = encrypt_aes128gcm(b"hello", _pub_bytes(browser), auth)
    assert a[:16] != b[:16]  # salt
    assert a[21:86] != b[21:86]  # ephemeral public key
    salt, rs, idlen = a[:16], *struct.unpack("!LB", a[16:21])
    assert len(salt) == 16 and rs == 4096 and idlen == 65 and a[21] == 0x04
    for body in (a, b):
        assert http_ece.decrypt(body, private_key=browser, auth_secret=auth, version="aes128gcm") == b"hello"


def test_max_plaintext_fits_4096_body() -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    body = encrypt_aes128gcm(b"x" * LIMITS["webpush"], _pub_bytes(browser), b"a" * 16)
    assert len(body) == 4096


def test_load_vapid_private_key_forms() -> None:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    der = key.private_bytes(Encoding.DER, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    expected = _pub_bytes(key)
    for form in (b64url_encode(raw), pem, pem.replace("\n", "\\n"), b64url_encode(der)):
        assert _pub_bytes(load_vapid_private_key(form)) == expected
    with pytest.raises(ValueError):
        load_vapid_private_key(b64url_encode(b"short"))
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError):
        load_vapid_private_key(
            other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        )


@pytest.mark.parametrize(
    ("endpoint", "origin"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"),
        ("https://Push.Example.com:443/x", "https://push.example.com"),
        ("https://push.example.com:8443/x?y=1", "https://push.example.com:8443"),
        ("http://127.0.0.1:8080/webpush/abc", "http://127.0.0.1:8080"),
        ("http://[::1]:9000/p", "http://[::1]:9000"),
    ],
)
def test_endpoint_origin(endpoint: str, origin: str) -> None:
    assert endpoint_origin(endpoint) == origin


def test_rfc8291_intermediate_values() -> None:
    """Each step of RFC 8291 §3.4 against Appendix A, so a wrong step is named, not just a wrong body."""
    as_key, ua_public = _key(AS_PRIVATE), b64url_decode(UA_PUBLIC)
    to = webpush_crypto.recipient(ua_public, b64url_decode(AUTH_SECRET))
    ecdh_secret = as_key.exchange(ec.ECDH(), to.public_key)
    assert b64url_encode(ecdh_secret) == ECDH_SECRET
    key_info = b"WebPush: info\x00" + to.public_bytes + _pub_bytes(as_key)
    assert b64url_encode(key_info) == KEY_INFO
    cek, nonce = webpush_crypto.derive_key_and_nonce(
        ecdh_secret, b64url_decode(AUTH_SECRET), key_info, b64url_decode(SALT)
    )
    assert (b64url_encode(cek), b64url_encode(nonce)) == (CEK, NONCE)


@pytest.mark.parametrize("as_object", [False, True], ids=["raw-point", "key-object"])
def test_rfc8291_vector_through_the_module(as_object: bool) -> None:
    ua: bytes | ec.EllipticCurvePublicKey = b64url_decode(UA_PUBLIC)
    if as_object:
        ua = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(UA_PUBLIC))
    body = webpush_crypto.encrypt(
        b64url_decode(PLAINTEXT),
        webpush_crypto.recipient(ua, b64url_decode(AUTH_SECRET)),
        salt=b64url_decode(SALT),
        private_key=_key(AS_PRIVATE),
    )
    assert b64url_encode(body) == FULL_BODY


@pytest.mark.parametrize(
    "size", [0, 1, 15, 16, 17, 200, 1000, LIMITS["webpush"], webpush_crypto.MAX_PLAINTEXT]
)
def test_http_ece_decrypts_every_size(size: int) -> None:
    """0 bytes, the block-size edges, the 4,096-byte body (3,993 bytes) and the one-record maximum.

    Every body is one record ending in the 0x02 delimiter, the empty message too: http_ece sent
    an 86-byte header with no record for it, which a user agent checking the delimiter
    (RFC 8291 §4) discards.
    """
    browser = ec.generate_private_key(ec.SECP256R1())
    auth = bytes(range(16))
    plaintext = bytes(i % 251 for i in range(size))
    body = encrypt_aes128gcm(plaintext, browser.public_key(), auth)
    assert len(body) == 86 + size + 1 + 16
    assert struct.unpack("!LB", body[16:21]) == (4096, 65)
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), body[21:86])  # keyid: the sender's point
    assert http_ece.decrypt(body, private_key=browser, auth_secret=auth, version="aes128gcm") == plaintext
    if size == LIMITS["webpush"]:
        assert len(body) == 4096


def test_plaintext_beyond_one_record_is_refused() -> None:
    """RFC 8291 §4: one record per message, and ``rs`` (4,096) greater than plaintext + 17.
    http_ece used to split it into two records, which user agents need not decrypt."""
    browser = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match=r"4079 bytes does not fit one aes128gcm record \(at most 4078"):
        encrypt_aes128gcm(b"x" * 4079, _pub_bytes(browser), b"a" * 16)


def test_bad_inputs_are_refused_with_the_reason() -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    point = _pub_bytes(browser)
    with pytest.raises(ValueError, match="auth secret: must be 16 bytes, got 15"):
        webpush_crypto.recipient(point, b"a" * 15)
    with pytest.raises(ValueError, match="65-byte uncompressed P-256 point"):
        webpush_crypto.recipient(
            browser.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint), b"a" * 16
        )
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    with pytest.raises(ValueError):
        webpush_crypto.recipient(off_curve, b"a" * 16)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="must be on P-256, not secp384r1"):
        webpush_crypto.recipient(p384, b"a" * 16)
    with pytest.raises(ValueError, match="salt: must be 16 bytes, got 8"):
        webpush_crypto.encrypt(b"x", webpush_crypto.recipient(point, b"a" * 16), salt=b"s" * 8)


def test_subscription_prepared_once_per_key_and_secret() -> None:
    a, b = (ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(2))
    auth = b"a" * 16
    first = webpush_crypto.recipient(a, auth)
    assert webpush_crypto.recipient(a, auth) is first
    assert webpush_crypto.recipient(_pub_bytes_of(a), auth) is webpush_crypto.recipient(
        _pub_bytes_of(a), auth
    )
    assert webpush_crypto.recipient(a, b"b" * 16).auth_secret == b"b" * 16
    other = webpush_crypto.recipient(b, auth)
    assert other.public_bytes == _pub_bytes_of(b) != first.public_bytes


def test_fresh_key_and_salt_for_each_message_to_a_cached_subscription() -> None:
    """The subscription is cached; the ephemeral key pair and the salt never are (RFC 8291 §3.1)."""
    browser = ec.generate_private_key(ec.SECP256R1())
    auth = b"0123456789abcdef"
    bodies = [encrypt_aes128gcm(b"same", browser.public_key(), auth) for _ in range(20)]
    assert len({body[:16] for body in bodies}) == 20
    assert len({body[21:86] for body in bodies}) == 20
    for body in bodies:
        assert http_ece.decrypt(body, private_key=browser, auth_secret=auth, version="aes128gcm") == b"same"


@pytest.mark.parametrize("key_length", [0, 1, 16, 32, 63, 64])
def test_hmac_matches_the_standard_library(key_length: int) -> None:
    key = bytes(range(key_length))
    for data in (b"", b"x", bytes(range(200))):
        assert webpush_crypto._hmac_sha256(key, data) == hmac.digest(key, data, "sha256")


def test_hmac_refuses_a_key_it_would_have_to_hash() -> None:
    with pytest.raises(ValueError, match="longer than the SHA-256 block"):
        webpush_crypto._hmac_sha256(bytes(65), b"x")


def _pub_bytes_of(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
