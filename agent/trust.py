"""The pinned controller key and signature checks, as light as a device needs.

``cryptography`` costs an agent ~10 MiB of RSS once imported, and a process
never unloads it. PyNaCl (libsodium) verifies the same Ed25519 signatures for
~3 MiB, so the agent uses it and falls back to ``cryptography`` where PyNaCl is
not installed. Either is imported at the first check, not at start; the PEM is
still checked for shape at start (an Ed25519 SubjectPublicKeyInfo is 44 bytes
with a fixed prefix), so a mangled provisioning file fails at boot.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable

from shared.canonical import key_id_of_raw, signing_bytes
from shared.errors import SignatureError
from shared.messages import Command, DesiredState

_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_BEGIN, _END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"

#: ``verify(signature, message)``; raises any exception when the signature is bad.
Verifier = Callable[[bytes, bytes], object]


def _spki_der(pem: str) -> bytes:
    text = pem.strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        raise ValueError("controller public key is not a PEM 'PUBLIC KEY' block")
    body = "".join(text[len(_BEGIN) : -len(_END)].split())
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"controller public key is not valid base64: {exc}") from None
    if len(der) != 44 or not der.startswith(_ED25519_SPKI_PREFIX):
        raise ValueError("controller public key is not an Ed25519 key")
    return der


def _load_verifier(raw: bytes) -> tuple[Verifier, tuple[type[BaseException], ...]]:
    try:
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey
    except ImportError:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        key = Ed25519PublicKey.from_public_bytes(raw)
        return key.verify, (InvalidSignature,)
    verify_key = VerifyKey(raw)
    return (lambda sig, msg: verify_key.verify(msg, sig)), (BadSignatureError,)


class PinnedKey:
    """An Ed25519 public key given as PEM; the crypto backend is loaded on first use."""

    def __init__(self, pem: str | bytes) -> None:
        self.pem = pem.decode() if isinstance(pem, bytes) else pem
        self.raw = _spki_der(self.pem)[len(_ED25519_SPKI_PREFIX) :]
        self.key_id = key_id_of_raw(self.raw)
        self._verifier: tuple[Verifier, tuple[type[BaseException], ...]] | None = None
        self._lock = threading.Lock()

    def verify(self, message: DesiredState | Command) -> None:
        """Raise SignatureError unless ``message`` carries a valid signature by this key."""
        if not message.signature:
            raise SignatureError("message is not signed")
        if message.key_id != self.key_id:
            raise SignatureError(f"signed by unknown key {message.key_id!r}")
        try:
            signature = base64.b64decode(message.signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError("signature is not valid base64") from exc
        verify, bad = self._backend()
        try:
            verify(signature, signing_bytes(message))
        except bad as exc:
            raise SignatureError("signature does not match") from exc
        except ValueError as exc:  # wrong length and the like
            raise SignatureError(f"malformed signature: {exc}") from exc

    def _backend(self) -> tuple[Verifier, tuple[type[BaseException], ...]]:
        with self._lock:
            if self._verifier is None:
                self._verifier = _load_verifier(self.raw)
            return self._verifier


__all__ = ["PinnedKey"]
