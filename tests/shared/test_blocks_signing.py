from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import blocks, signing
from shared.errors import ProtocolError, SignatureError
from shared.messages import Command, CommandKind, DesiredState, ModelRef


@settings(max_examples=50, deadline=None)
@given(payload=st.binary(min_size=1, max_size=5000), block_size=st.integers(1, 700))
def test_split_frame_reassemble(payload: bytes, block_size: int) -> None:
    sha = hashlib.sha256(payload).hexdigest()
    parts = blocks.split(payload, block_size)
    assert len(parts) == blocks.block_count(len(payload), block_size)
    decoded = [blocks.decode_block(blocks.encode_block(sha, i, len(parts), len(payload), p))
               for i, p in enumerate(parts)]
    assert b"".join(b.data for b in decoded) == payload
    assert all(b.sha256 == sha and b.count == len(parts) for b in decoded)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200))
def test_garbage_blocks_rejected(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        blocks.decode_block(payload)


def test_flipped_bit_fails_crc() -> None:
    framed = bytearray(blocks.encode_block("ab" * 32, 0, 1, 4, b"data"))
    framed[-1] ^= 1
    with pytest.raises(ProtocolError, match="crc"):
        blocks.decode_block(bytes(framed))


def test_index_out_of_range() -> None:
    with pytest.raises(ProtocolError, match="out of range"):
        blocks.decode_block(blocks.encode_block("ab" * 32, 3, 3, 4, b"data"))


def _manifest() -> DesiredState:
    return DesiredState(
        device_id="lock-1", deployment_id="dep", model=ModelRef(name="m", version=2, sha256="a" * 64),
        runtime="litert", profile="smart-lock", size=10, wire_sha256="a" * 64, wire_size=10,
        block_size=16, block_count=1, expires_at=time.time() + 60,
    )


def test_sign_verify() -> None:
    key = signing.generate_private_key()
    signed = signing.sign(_manifest(), key)
    signing.verify(signed, key.public_key())
    assert signed.key_id == signing.key_id(key.public_key())


@pytest.mark.parametrize("field,value", [("size", 11), ("runtime", "onnxruntime"), ("allow_downgrade", True),
                                         ("device_id", "lock-2")])
def test_tampered_manifest_fails(field: str, value: object) -> None:
    key = signing.generate_private_key()
    tampered = signing.sign(_manifest(), key).model_copy(update={field: value})
    with pytest.raises(SignatureError):
        signing.verify(tampered, key.public_key())


def test_wrong_key_and_unsigned_fail() -> None:
    key, other = signing.generate_private_key(), signing.generate_private_key()
    with pytest.raises(SignatureError, match="unknown key"):
        signing.verify(signing.sign(_manifest(), key), other.public_key())
    with pytest.raises(SignatureError, match="not signed"):
        signing.verify(_manifest(), key.public_key())


def test_command_signing_and_key_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = signing.generate_private_key()
    signing.save_private_key(key, tmp_path / "k.pem")
    loaded = signing.load_private_key(tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0
    pub = signing.load_public_key(signing.public_key_pem(key.public_key()))
    cmd = signing.sign(Command(device_id="d", command_id="c1", kind=CommandKind.ROLLBACK), loaded)
    signing.verify(cmd, pub)
    with pytest.raises(SignatureError):
        signing.verify(cmd.model_copy(update={"kind": CommandKind.PING}), pub)


def test_errors_public_surface() -> None:
    import shared.errors as e

    public = {n for n in dir(e) if n.endswith("Error") and not n.startswith("_")}
    assert set(e.__all__) == public
