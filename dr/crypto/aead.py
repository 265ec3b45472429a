"""AES-256-GCM sealing of repository objects (FORMAT.md, "Encryption").

``seal(key, plaintext, aad)`` -> ``nonce(12) || ciphertext || tag(16)``.
The associated data binds a ciphertext to what it claims to be (object type
and id), so a valid ciphertext moved to another name or type fails to open.
Nonces are random (96 bits): with at most 2^32 seals per master key the
collision probability stays below 2^-32 (FORMAT.md discusses the bound).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


class AuthenticationFailed(Exception):
    """The ciphertext was modified, truncated, or sealed with another key or AAD."""


class Sealer:
    """AES-256-GCM with one key; thread-safe (AESGCM objects are stateless)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def seal_into(self, plaintext: bytes | bytearray | memoryview, aad: bytes, out: memoryview) -> None:
        """``seal`` written into ``out``, which is exactly ``len(plaintext) + OVERHEAD``
        bytes: no ciphertext object, and the encryption runs without the GIL."""
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        with out[NONCE_SIZE:] as rest:
            self._aead.encrypt_into(nonce, plaintext, aad, rest)

    def open_into(self, sealed: bytes | memoryview, aad: bytes, out: memoryview) -> None:
        """``open`` written into ``out``, which is exactly ``len(sealed) - OVERHEAD`` bytes:
        no plaintext object to allocate and zero-fill. On failure ``out`` holds garbage."""
        if len(sealed) < OVERHEAD:
            raise AuthenticationFailed("ciphertext too short")
        mv = memoryview(sealed)
        try:
            self._aead.decrypt_into(mv[:NONCE_SIZE], mv[NONCE_SIZE:], aad, out)
        except InvalidTag:
            raise AuthenticationFailed("authentication failed") from None

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise AuthenticationFailed("ciphertext too short")
        mv = memoryview(sealed)
        try:
            return self._aead.decrypt(mv[:NONCE_SIZE], mv[NONCE_SIZE:], aad)
        except InvalidTag:
            raise AuthenticationFailed("authentication failed") from None
