"""Web Push encryption against RFC 8291 Appendix A, byte for byte, and round trips."""

from __future__ import annotations

import struct

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushgate.domain.render import LIMITS, b64url_decode, b64url_encode
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
