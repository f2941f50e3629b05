"""The pinned controller key, loaded only when the first signature is checked.

``cryptography`` costs an idle agent about 8 MiB of RSS; a device whose model
is current never needs it between updates. The PEM is still checked for shape
at start (an Ed25519 SubjectPublicKeyInfo is 44 bytes with a fixed prefix), so
a mangled provisioning file fails the agent at boot, not at the first update.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_BEGIN, _END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"


def _spki_der(pem: str) -> bytes:
    text = pem.strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        raise ValueError("controller public key is not a PEM 'PUBLIC KEY' block")
    body = "".join(text[len(_BEGIN): -len(_END)].split())
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"controller public key is not valid base64: {exc}") from None
    if len(der) != 44 or not der.startswith(_ED25519_SPKI_PREFIX):
        raise ValueError("controller public key is not an Ed25519 key")
    return der


class PinnedKey:
    """An Ed25519 public key given as PEM; the cryptography object is built on first use."""

    def __init__(self, pem: str | bytes) -> None:
        self.pem = pem.decode() if isinstance(pem, bytes) else pem
        self.raw = _spki_der(self.pem)[len(_ED25519_SPKI_PREFIX):]
        self._key: Ed25519PublicKey | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> Ed25519PublicKey:
        with self._lock:
            if self._key is None:
                from shared.signing import load_public_key

                self._key = load_public_key(self.pem)
            return self._key


__all__ = ["PinnedKey"]
