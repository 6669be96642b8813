"""Encryption at rest for provider credentials (AES-256-GCM from ``cryptography``).

The master key comes from ``secret_key`` / ``PUSHGATE_SECRET_KEY``; any string of 16+
characters works, stretched to 32 bytes with HKDF so operators can use a passphrase or
``openssl rand -base64 32``. The row's identity (app, provider) is bound in as associated
data, so a ciphertext copied onto another row does not decrypt.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"


class SecretKeyError(Exception):
    """The master key is missing, too short, or not the one the data was written with."""


class SecretBox:
    def __init__(self, master_key: str) -> None:
        if len(master_key) < 16:
            raise SecretKeyError("secret_key must be at least 16 characters (e.g. `openssl rand -base64 32`)")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pushgate credentials v1").derive(
            master_key.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, value: dict[str, Any], context: str) -> bytes:
        nonce = os.urandom(12)
        plaintext = json.dumps(value, separators=(",", ":")).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, blob: bytes, context: str) -> dict[str, Any]:
        if not blob.startswith(_VERSION):
            raise SecretKeyError("unknown credential encoding")
        try:
            plaintext = self._aead.decrypt(blob[1:13], blob[13:], context.encode())
        except InvalidTag:
            raise SecretKeyError(
                "stored credentials cannot be decrypted: secret_key differs from the one they were saved with"
            ) from None
        value: dict[str, Any] = json.loads(plaintext)
        return value
