"""The verifier refuses every kind of bad manifest, command and artifact, with the right reason code."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from agent.trust import PinnedKey
from agent.verifier import TrustContext, verify_artifact, verify_command, verify_manifest, verify_wire
from shared import signing
from shared.errors import (
    BudgetError,
    ExpiredError,
    HashMismatchError,
    IncompatibleError,
    RollbackError,
    SignatureError,
    SizeMismatchError,
    VerificationError,
)
from shared.messages import Command, CommandKind, DesiredState, ModelRef
from shared.profiles import get_profile

DATA = b"model-bytes" * 100
SHA = hashlib.sha256(DATA).hexdigest()
NOW = 1_000_000.0


@pytest.fixture(scope="module")
def key():  # type: ignore[no-untyped-def]
    return signing.generate_private_key()


@pytest.fixture(scope="module")
def ctx(key) -> TrustContext:  # type: ignore[no-untyped-def]
    return TrustContext(
        "dev-1", get_profile("car-ecu"), frozenset({"onnxruntime"}), PinnedKey(signing.public_key_pem(key.public_key()))
    )


def manifest(key: Any, sign: bool = True, **fields: Any) -> DesiredState:
    values: dict[str, Any] = {
        "device_id": "dev-1",
        "deployment_id": "dep-1",
        "model": ModelRef(name="m", version=2, sha256=SHA),
        "runtime": "onnxruntime",
        "profile": "car-ecu",
        "size": len(DATA),
        "wire_sha256": SHA,
        "wire_size": len(DATA),
        "block_size": 256,
        "block_count": 5,
    }
    values.update(fields)
    m = DesiredState(**values)
    return signing.sign(m, key) if sign else m


ACTIVE_V2 = ModelRef(name="m", version=2, sha256="0" * 64)


def test_accepts_a_good_manifest(key, ctx) -> None:  # type: ignore[no-untyped-def]
    verify_manifest(manifest(key), ctx, active=None, now=NOW)
    verify_manifest(manifest(key), ctx, active=ACTIVE_V2.model_copy(update={"version": 1}), now=NOW)
    verify_manifest(manifest(key), ctx, active=ACTIVE_V2.model_copy(update={"name": "other", "version": 9}), now=NOW)


@pytest.mark.parametrize(
    ("make", "error", "reason"),
    [
        (lambda k: manifest(k, sign=False), SignatureError, "bad_signature"),
        (lambda k: manifest(k).model_copy(update={"size": 999}), SignatureError, "bad_signature"),
        (lambda k: manifest(signing.generate_private_key()), SignatureError, "bad_signature"),
        (lambda k: manifest(k).model_copy(update={"signature": "!!notbase64"}), SignatureError, "bad_signature"),
        (lambda k: manifest(k, expires_at=NOW - 1), ExpiredError, "expired"),
        (lambda k: manifest(k, device_id="dev-2"), IncompatibleError, "incompatible"),
        (lambda k: manifest(k, profile="medical-monitor"), IncompatibleError, "incompatible"),
        (lambda k: manifest(k, runtime="litert"), IncompatibleError, "incompatible"),
        (
            lambda k: manifest(k, size=3 << 20, wire_size=3 << 20, block_count=(3 << 20) // 256),
            BudgetError,
            "over_budget",
        ),
        (lambda k: manifest(k, block_count=4), SizeMismatchError, "size_mismatch"),
        (lambda k: manifest(k, wire_size=len(DATA) - 1), SizeMismatchError, "size_mismatch"),
        (lambda k: manifest(k, wire_sha256="f" * 64), HashMismatchError, "hash_mismatch"),
    ],
)
def test_refuses_manifest(key, ctx, make, error, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as info:
        verify_manifest(make(key), ctx, active=None, now=NOW)
    assert info.value.reason == reason


@pytest.mark.parametrize("version", [1, 2])
def test_refuses_version_not_newer(key, ctx, version) -> None:  # type: ignore[no-untyped-def]
    old = manifest(key, model=ModelRef(name="m", version=version, sha256=SHA))
    with pytest.raises(RollbackError) as info:
        verify_manifest(old, ctx, active=ACTIVE_V2, now=NOW)
    assert info.value.reason == "version_not_newer"


def test_signed_downgrade_is_allowed(key, ctx) -> None:  # type: ignore[no-untyped-def]
    old = manifest(key, model=ModelRef(name="m", version=1, sha256=SHA), allow_downgrade=True)
    verify_manifest(old, ctx, active=ACTIVE_V2, now=NOW)


def test_downgrade_flag_cannot_be_added_without_signing(key, ctx) -> None:  # type: ignore[no-untyped-def]
    tampered = manifest(key, model=ModelRef(name="m", version=1, sha256=SHA)).model_copy(
        update={"allow_downgrade": True}
    )
    with pytest.raises(SignatureError):
        verify_manifest(tampered, ctx, active=ACTIVE_V2, now=NOW)


def test_artifact_and_wire_bytes(key) -> None:  # type: ignore[no-untyped-def]
    m = manifest(key)
    verify_artifact(m, DATA)
    verify_wire(m, DATA)
    with pytest.raises(SizeMismatchError):
        verify_artifact(m, DATA + b"x")
    with pytest.raises(HashMismatchError) as info:
        verify_artifact(m, DATA[:-1] + b"X")
    assert info.value.reason == "hash_mismatch"
    with pytest.raises(SizeMismatchError):
        verify_wire(m, DATA[:-1])


def test_commands(key, ctx) -> None:  # type: ignore[no-untyped-def]
    cmd = signing.sign(Command(device_id="dev-1", command_id="c1", kind=CommandKind.ROLLBACK), key)
    verify_command(cmd, ctx, now=NOW)
    with pytest.raises(SignatureError):
        verify_command(cmd.model_copy(update={"kind": CommandKind.PING}), ctx, now=NOW)
    with pytest.raises(IncompatibleError):
        verify_command(signing.sign(cmd.model_copy(update={"device_id": "dev-2"}), key), ctx, now=NOW)
    with pytest.raises(ExpiredError):
        verify_command(signing.sign(cmd.model_copy(update={"expires_at": NOW}), key), ctx, now=NOW)


def test_every_refusal_is_a_verification_error() -> None:
    for error in (
        SignatureError,
        ExpiredError,
        IncompatibleError,
        BudgetError,
        SizeMismatchError,
        HashMismatchError,
        RollbackError,
    ):
        assert issubclass(error, VerificationError)
