"""Block download files: resume from .have, header/CRC checks, coalesced ranges, zstd bounds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zstandard

from agent.download import Download, cleanup, decode_wire
from shared import blocks
from shared.errors import ProtocolError, SizeMismatchError
from shared.messages import DesiredState, ModelRef

DATA = bytes(range(256)) * 40  # 10240 bytes
BS = 1000  # -> 11 blocks, the last 240 bytes


def manifest(data: bytes = DATA, wire: bytes | None = None, encoding: str = "identity") -> DesiredState:
    wire = data if wire is None else wire
    return DesiredState(
        device_id="dev-1",
        deployment_id="d",
        model=ModelRef(name="m", version=1, sha256=hashlib.sha256(data).hexdigest()),
        runtime="onnxruntime",
        profile="car-ecu",
        size=len(data),
        encoding=encoding,  # type: ignore[arg-type]
        wire_sha256=hashlib.sha256(wire).hexdigest(),
        wire_size=len(wire),
        block_size=BS,
        block_count=blocks.block_count(len(wire), BS),
    )


def frames(m: DesiredState, wire: bytes = DATA) -> list[blocks.Block]:
    parts = blocks.split(wire, BS)
    return [
        blocks.decode_block(blocks.encode_block(m.wire_sha256, i, len(parts), len(wire), p))
        for i, p in enumerate(parts)
    ]


def test_assembles_in_any_order_and_counts_duplicates(tmp_path: Path) -> None:
    m = manifest()
    dl = Download(m, tmp_path)
    fs = frames(m)
    assert dl.missing_ranges() == [(0, 11)]
    for f in reversed(fs):
        assert dl.accept(f)
    assert not dl.accept(fs[3]) and dl.duplicates == 1
    assert dl.complete and dl.read_wire() == DATA


def test_missing_ranges_are_coalesced(tmp_path: Path) -> None:
    m = manifest()
    dl = Download(m, tmp_path)
    fs = frames(m)
    for i in (0, 1, 4, 5, 6, 10):
        dl.accept(fs[i])
    assert dl.missing_ranges() == [(2, 4), (7, 10)]
    assert dl.missing_ranges(limit=1) == [(2, 4)]


def test_resumes_from_have_bitmap_after_restart(tmp_path: Path) -> None:
    m = manifest()
    fs = frames(m)
    first = Download(m, tmp_path)
    for f in fs[:6]:
        first.accept(f)
    first.close()
    second = Download(m, tmp_path)
    assert second.resumed_blocks == 6 and second.missing_ranges() == [(6, 11)]
    for f in fs[6:]:
        second.accept(f)
    assert second.complete and second.read_wire() == DATA


def test_have_of_another_layout_is_ignored(tmp_path: Path) -> None:
    m = manifest()
    dl = Download(m, tmp_path)
    dl.accept(frames(m)[0])
    dl.close()
    other = m.model_copy(update={"block_size": 2000, "block_count": 6})
    assert Download(other, tmp_path).received == 0


@pytest.mark.parametrize("field", ["sha", "count", "total", "length"])
def test_rejects_blocks_not_matching_the_manifest(tmp_path: Path, field: str) -> None:
    m = manifest()
    dl = Download(m, tmp_path)
    data = DATA[:BS]
    sha, count, total = m.wire_sha256, m.block_count, m.wire_size
    if field == "sha":
        sha = "a" * 64
    elif field == "count":
        count += 1
    elif field == "total":
        total += 1
    else:
        data = data[:-1]
    with pytest.raises(ProtocolError):
        dl.accept(blocks.decode_block(blocks.encode_block(sha, 0, count, total, data)))
    assert dl.received == 0


def test_corrupt_frames_fail_decoding() -> None:
    frame = bytearray(blocks.encode_block("a" * 64, 0, 1, 3, b"abc"))
    frame[-1] ^= 1
    for bad in (bytes(frame), b"", b"EFB1", b"x" * 100):
        with pytest.raises(ProtocolError):
            blocks.decode_block(bad)


def test_zstd_is_decoded_with_a_bound(tmp_path: Path) -> None:
    wire = zstandard.ZstdCompressor().compress(DATA)
    assert decode_wire(manifest(DATA, wire, "zstd"), wire) == DATA
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (10 * len(DATA)))
    with pytest.raises(SizeMismatchError):
        decode_wire(manifest(DATA, bomb, "zstd"), bomb)
    with pytest.raises(ProtocolError):
        decode_wire(manifest(DATA, b"not zstd", "zstd"), b"not zstd")


def test_discard_and_cleanup(tmp_path: Path) -> None:
    m = manifest()
    dl = Download(m, tmp_path)
    dl.accept(frames(m)[0])
    dl.close()
    (tmp_path / ("b" * 64 + ".part")).write_bytes(b"old")
    cleanup(tmp_path, keep=m.wire_sha256)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{m.wire_sha256}.have", f"{m.wire_sha256}.part"]
    Download(m, tmp_path).discard()
    assert list(tmp_path.iterdir()) == []
