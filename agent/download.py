"""Resumable block download of one artifact.

Blocks are written at ``index * block_size`` into ``downloads/{wire_sha}.part``;
``downloads/{wire_sha}.have`` holds a small header (block size, count) and a
bitmap of the blocks present.  The part file is fsync'd before the bitmap
that claims its blocks, so after a crash the bitmap never names a block whose
bytes are not on disk; a torn bitmap write loses at most some claims, which
are simply fetched again.  Both files survive broker and agent restarts.
"""

from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path

import zstandard

from shared.blocks import Block
from shared.errors import ProtocolError, SizeMismatchError
from shared.messages import DesiredState

_HAVE_HEADER = struct.Struct(">II")
#: Bitmap fsync batching: a crash loses at most this many blocks' claims.
FLUSH_EVERY_BLOCKS = 64
FLUSH_EVERY_S = 0.5
MAX_RANGES = 1024


class Download:
    """One artifact being assembled; not thread-safe (owned by the updater thread)."""

    def __init__(self, manifest: DesiredState, directory: Path) -> None:
        self.manifest = manifest
        self.sha = manifest.wire_sha256
        self.count = manifest.block_count
        self._bs = manifest.block_size
        directory.mkdir(parents=True, exist_ok=True)
        self.part_path = directory / f"{self.sha}.part"
        self.have_path = directory / f"{self.sha}.have"
        self._have = self._load_bitmap()
        self.resumed_blocks = self.received
        self.new_blocks = 0
        self.duplicates = 0
        self._fd = os.open(self.part_path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self._fd, manifest.wire_size)
        self._unflushed = 0
        self._last_flush = time.monotonic()

    # -- state ---------------------------------------------------------------------
    @property
    def received(self) -> int:
        return int.from_bytes(self._have, "little").bit_count()

    @property
    def complete(self) -> bool:
        return self.received == self.count

    def has(self, index: int) -> bool:
        return bool(self._have[index >> 3] & (1 << (index & 7)))

    def missing_ranges(self, limit: int = MAX_RANGES) -> list[tuple[int, int]]:
        """Missing blocks as coalesced ``[start, end)`` ranges, at most ``limit`` of them."""
        ranges: list[tuple[int, int]] = []
        start: int | None = None
        for i in range(self.count):
            if not self.has(i):
                if start is None:
                    start = i
            elif start is not None:
                ranges.append((start, i))
                start = None
                if len(ranges) == limit:
                    return ranges
        if start is not None:
            ranges.append((start, self.count))
        return ranges

    # -- writing -----------------------------------------------------------------------
    def accept(self, block: Block) -> bool:
        """Store ``block``; False if it was a duplicate.  ProtocolError if it does not belong here."""
        self._check(block)
        if self.has(block.index):
            self.duplicates += 1
            return False
        os.pwrite(self._fd, block.data, block.index * self._bs)
        self._have[block.index >> 3] |= 1 << (block.index & 7)
        self.new_blocks += 1
        self._unflushed += 1
        if self._unflushed >= FLUSH_EVERY_BLOCKS or time.monotonic() - self._last_flush > FLUSH_EVERY_S:
            self.flush()
        return True

    def flush(self) -> None:
        if self._fd < 0:
            return
        os.fsync(self._fd)
        with open(self.have_path, "r+b" if self.have_path.exists() else "wb") as f:
            f.write(_HAVE_HEADER.pack(self._bs, self.count) + bytes(self._have))
            f.flush()
            os.fsync(f.fileno())
        self._unflushed = 0
        self._last_flush = time.monotonic()

    def read_wire(self) -> bytes:
        """All transfer bytes; call only when complete."""
        self.flush()
        with open(self.part_path, "rb") as f:
            wire = f.read()
        return wire

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Forget this artifact: after a hash failure its bytes must not be resumed."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.part_path.unlink(missing_ok=True)
        self.have_path.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------
    def _check(self, block: Block) -> None:
        m = self.manifest
        if block.sha256 != self.sha:
            raise ProtocolError(f"block for artifact {block.sha256[:12]}, downloading {self.sha[:12]}")
        if block.count != self.count or block.total_size != m.wire_size:
            raise ProtocolError(
                f"block header says {block.count} blocks / {block.total_size} bytes, "
                f"manifest {self.count} / {m.wire_size}"
            )
        expected = min(self._bs, m.wire_size - block.index * self._bs)
        if len(block.data) != expected:
            raise ProtocolError(f"block {block.index}: {len(block.data)} bytes, expected {expected}")

    def _load_bitmap(self) -> bytearray:
        """The saved bitmap if it belongs to this transfer layout and the part file exists."""
        empty = bytearray((self.count + 7) // 8)
        try:
            raw = self.have_path.read_bytes()
        except OSError:
            return empty
        if not self.part_path.exists() or len(raw) != _HAVE_HEADER.size + len(empty):
            return empty
        if _HAVE_HEADER.unpack_from(raw) != (self._bs, self.count):
            return empty
        return bytearray(raw[_HAVE_HEADER.size :])


def decode_wire(manifest: DesiredState, wire: bytes) -> bytes:
    """Undo the transfer encoding, reading at most ``size + 1`` bytes so oversize is detected, not buffered."""
    if manifest.encoding == "identity":
        return wire
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(wire))
        chunks: list[bytes] = []
        remaining = manifest.size + 1
        while remaining > 0:
            chunk = reader.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"zstd: {exc}") from exc
    if len(data) > manifest.size:
        raise SizeMismatchError(f"zstd stream decodes to more than the manifest's {manifest.size} bytes")
    return data


def cleanup(directory: Path, keep: str | None = None) -> None:
    """Remove leftovers of abandoned transfers (a newer manifest replaced them)."""
    if not directory.exists():
        return
    for path in directory.iterdir():
        if path.suffix in (".part", ".have") and path.stem != keep:
            path.unlink(missing_ok=True)


__all__ = ["Download", "cleanup", "decode_wire"]
