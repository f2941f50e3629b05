"""Content-addressed artifact store: ``artifacts/<sha[:2]>/<sha>``, plus ``<sha>.zst`` wire copies.

Writes go to a temporary file in the same directory, are fsync'd and then
``os.replace``'d, so a crash or a full disk never leaves a half-written
artifact under its final name. Reads verify the hash: a flipped bit on disk is
reported, not shipped to a fleet.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zstandard

from controller.errors import NotFoundError, StorageError
from shared.topics import validate_sha256

log = logging.getLogger("edgefleet.controller.artifacts")


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    size: int
    encoding: str  # "identity" or "zstd"
    wire_sha256: str
    wire_size: int


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    def __init__(self, root: Path, *, zstd: bool = True, zstd_level: int = 9, cache_bytes: int = 256 << 20) -> None:
        self.root = Path(root)
        self.zstd = zstd
        self.zstd_level = zstd_level
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cache_used = 0
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------
    def path(self, sha256: str) -> Path:
        validate_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def wire_path(self, sha256: str) -> Path:
        return self.path(sha256).with_name(sha256 + ".zst")

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    # -- write -----------------------------------------------------------------
    def put(self, data: bytes) -> StoredArtifact:
        """Store ``data`` (idempotent) and its zstd wire copy when that is smaller."""
        if not data:
            raise ValueError("empty artifact")
        sha = _sha(data)
        path = self.path(sha)
        if not path.is_file():
            self._atomic_write(path, data)
        encoding, wire = "identity", data
        if self.zstd:
            wire_path = self.wire_path(sha)
            if wire_path.is_file():
                encoding, wire = "zstd", wire_path.read_bytes()
            else:
                compressed = zstandard.ZstdCompressor(level=self.zstd_level).compress(data)
                if len(compressed) < len(data):
                    self._atomic_write(wire_path, compressed)
                    encoding, wire = "zstd", compressed
        return StoredArtifact(sha, len(data), encoding, _sha(wire), len(wire))

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp_name: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:
            disk_full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            log.error("artifact write %s failed: %s", path.name, exc)
            raise StorageError(
                f"artifact store: {'disk full' if disk_full else 'write failed'} ({exc.strerror or exc})",
                disk_full=disk_full,
            ) from exc
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    # -- read ------------------------------------------------------------------
    def read(self, sha256: str) -> bytes:
        """The file bytes, verified against ``sha256``."""
        return self._cached(("file", sha256), lambda: self._read_verified(self.path(sha256), sha256))

    def read_wire(self, sha256: str, encoding: str, wire_sha256: str) -> bytes:
        """The bytes that travel in blocks for artifact ``sha256``, verified against ``wire_sha256``."""
        if encoding == "identity":
            return self.read(sha256)
        return self._cached(("wire", wire_sha256), lambda: self._read_verified(self.wire_path(sha256), wire_sha256))

    def _read_verified(self, path: Path, expected: str) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"artifact {expected} is not in the store") from exc
        except OSError as exc:
            raise StorageError(f"artifact store: read of {expected} failed ({exc.strerror or exc})") from exc
        actual = _sha(data)
        if actual != expected:
            log.error("artifact %s is corrupt on disk (sha256 %s)", path, actual)
            raise StorageError(f"artifact {expected} is corrupt on disk (sha256 {actual})")
        return data

    def _cached(self, key: tuple[str, str], load: Callable[[], bytes]) -> bytes:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        data = load()
        with self._lock:
            if len(data) <= self._cache_bytes // 4 and key not in self._cache:
                self._cache[key] = data
                self._cache_used += len(data)
                while self._cache_used > self._cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._cache_used -= len(old)
        return data


__all__ = ["ArtifactStore", "StoredArtifact"]
