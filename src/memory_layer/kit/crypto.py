"""Encryption at rest: an AES-GCM key ring (MEMORY_ENCRYPTION_KEYS) and the sealed form of a
message's content and metadata.

The ring is `id:base64-of-32-bytes,...`; the last key encrypts new rows, every key decrypts the
rows stored under its id (the id is stored per row). A sealed value is a 12-byte random nonce
followed by the AES-GCM ciphertext and tag; the associated data binds it to its tenant and row, so
a ciphertext copied onto another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

NONCE_BYTES = 12
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Where a sessionmaker's sessions find the ring (`info=`, like the search cache in kit/cache.py).
SESSION_KEYRING = "memory_layer.keyring"


class EncryptionKeyError(ValueError):
    """MEMORY_ENCRYPTION_KEYS cannot be read, or a row's key is not in the ring."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes


class EncryptionKeyRing:
    """The encryption keys by id, in the order given; the last one encrypts."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.ids = list(keys)

    @classmethod
    def parse(cls, value: str) -> EncryptionKeyRing:
        """A ring from `id:base64,...`; EncryptionKeyError names what is wrong (never a key)."""
        keys: dict[str, bytes] = {}
        for index, item in enumerate(part.strip() for part in value.split(",") if part.strip()):
            key_id, sep, encoded = item.partition(":")
            if not sep or not KEY_ID.match(key_id):
                raise EncryptionKeyError(
                    f"MEMORY_ENCRYPTION_KEYS entry {index + 1}: expected id:base64-of-32-bytes, "
                    "the id made of letters, digits, '_', '.' or '-'"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise EncryptionKeyError(
                    f"MEMORY_ENCRYPTION_KEYS key {key_id!r}: not valid base64"
                ) from exc
            if len(key) != 32:
                raise EncryptionKeyError(
                    f"MEMORY_ENCRYPTION_KEYS key {key_id!r}: {len(key)} bytes, AES-256-GCM needs 32"
                )
            if key_id in keys:
                raise EncryptionKeyError(f"MEMORY_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
            keys[key_id] = key
        return cls(keys)

    @property
    def empty(self) -> bool:
        return not self.ids

    @property
    def current(self) -> str:
        """The id of the key that encrypts new rows."""
        if not self.ids:
            raise EncryptionKeyError("no encryption key: set MEMORY_ENCRYPTION_KEYS")
        return self.ids[-1]

    def seal(self, plaintext: bytes, associated: bytes) -> Sealed:
        key_id = self.current
        nonce = os.urandom(NONCE_BYTES)
        return Sealed(key_id, nonce + self._ciphers[key_id].encrypt(nonce, plaintext, associated))

    def open(self, key_id: str, sealed: bytes, associated: bytes) -> bytes:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise EncryptionKeyError(
                f"a row is encrypted with key {key_id!r}, which MEMORY_ENCRYPTION_KEYS does not hold"
            )
        try:
            return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
        except InvalidTag as exc:
            raise EncryptionKeyError(f"a row under key {key_id!r} does not decrypt (tampered?)") from exc


def row_binding(tenant_id: str, row_id: object) -> bytes:
    """The associated data of a message's ciphertext: its tenant and id."""
    return f"{tenant_id}\x00{row_id}".encode()


def seal_message(
    ring: EncryptionKeyRing, tenant_id: str, row_id: object, content: str, metadata: dict[str, Any]
) -> Sealed:
    """A message's content and metadata as one ciphertext."""
    payload = json.dumps({"content": content, "metadata": metadata}, ensure_ascii=False,
                         separators=(",", ":")).encode()
    return ring.seal(payload, row_binding(tenant_id, row_id))


def open_message(
    ring: EncryptionKeyRing, tenant_id: str, row_id: object, key_id: str, sealed: bytes
) -> tuple[str, dict[str, Any]]:
    """The content and metadata `seal_message` sealed."""
    payload = json.loads(ring.open(key_id, bytes(sealed), row_binding(tenant_id, row_id)))
    return payload["content"], payload["metadata"]


def keyring_of(session: AsyncSession | Session) -> EncryptionKeyRing:
    """The ring of the session's sessionmaker; an empty ring when it was given none."""
    ring = session.info.get(SESSION_KEYRING)
    return ring if isinstance(ring, EncryptionKeyRing) else EncryptionKeyRing({})
