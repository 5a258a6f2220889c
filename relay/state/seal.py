"""Sealing what the relay keeps in shared state (Redis): AES-GCM with a key derived from
the cookie secrets, so held and waiting copies are never at rest in the clear.

The newest secret seals; every listed secret opens, so secrets rotate like the cookie's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
NONCE_BYTES = 12
_CONTEXT = b"relay.state.seal.v1"


class SealError(ValueError):
    """A sealed value could not be opened: tampered, or sealed with an unknown secret."""


class Sealer:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("sealing needs at least one secret")
        self._keys = [
            AESGCM(hmac.new(s.encode(), _CONTEXT, hashlib.sha256).digest()) for s in secrets
        ]

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._keys[-1].encrypt(nonce, data, None)

    def open(self, blob: bytes) -> bytes:
        if not blob.startswith(VERSION) or len(blob) < 1 + NONCE_BYTES + 16:
            raise SealError("not a sealed value")
        nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        for key in reversed(self._keys):
            try:
                return key.decrypt(nonce, body, None)
            except InvalidTag:
                continue
        raise SealError("sealed with an unknown secret, or tampered with")
