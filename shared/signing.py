"""Ed25519 signing of manifests and commands.

The signature covers the canonical JSON of every field except ``signature``
itself, so any change to model, hash, size, runtime or expiry breaks it.
The agent pins the controller's public key at provisioning.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.canonical import key_id_of_raw, signing_bytes
from shared.errors import SignatureError
from shared.messages import Command, DesiredState

S = TypeVar("S", DesiredState, Command)


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint so a device can tell which key signed (key rotation)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key_id_of_raw(raw)


def sign(message: S, private_key: Ed25519PrivateKey) -> S:
    """Return a copy of ``message`` with key_id and signature set."""
    stamped = message.model_copy(update={"key_id": key_id(private_key.public_key()), "signature": ""})
    signature = private_key.sign(signing_bytes(stamped))
    return stamped.model_copy(update={"signature": base64.b64encode(signature).decode()})


def verify(message: DesiredState | Command, public_key: Ed25519PublicKey) -> None:
    """Raise SignatureError unless ``message`` was signed by ``public_key``."""
    if not message.signature:
        raise SignatureError("message is not signed")
    if message.key_id != key_id(public_key):
        raise SignatureError(f"signed by unknown key {message.key_id!r}")
    try:
        signature = base64.b64decode(message.signature, validate=True)
        public_key.verify(signature, signing_bytes(message))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("signature does not match") from exc


# --- key files -------------------------------------------------------------


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


__all__ = [
    "generate_private_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_key_pem",
    "save_private_key",
    "sign",
    "signing_bytes",
    "verify",
]
