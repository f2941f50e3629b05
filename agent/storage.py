"""Crash-safe small files: write to a temp file, fsync, ``os.replace``.

A device loses power at any moment; a reader must see the old file or the new
one, never half of either.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, sort_keys=True).encode())


def read_json(path: Path) -> Any:
    """The parsed file, or None if it is missing or unreadable (treated as absent)."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def next_session(data_dir: Path) -> int:
    """Increment and persist the session number so the controller can tell restarts apart."""
    path = data_dir / "session.json"
    current = read_json(path)
    session = (current.get("session", 0) if isinstance(current, dict) else 0) + 1
    atomic_write_json(path, {"session": session})
    return int(session)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); silently skipped where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_write_bytes", "atomic_write_json", "next_session", "read_json"]
