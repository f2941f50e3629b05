"""What a signature covers, without importing any crypto library.

Kept apart from :mod:`shared.signing` so a device can check signatures with a
lighter Ed25519 implementation than ``cryptography`` (see agent/trust.py).
"""

from __future__ import annotations

import hashlib

from shared.codec import canonical_json
from shared.messages import Command, DesiredState


def signing_bytes(message: DesiredState | Command) -> bytes:
    """Canonical JSON of every field except ``signature``."""
    return canonical_json(message.model_dump(mode="json", exclude={"signature"}))


def key_id_of_raw(raw_public_key: bytes) -> str:
    """Short fingerprint of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


__all__ = ["key_id_of_raw", "signing_bytes"]
