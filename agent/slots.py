"""A/B model slots with an atomically replaced active pointer.

Layout under ``data_dir``::

    slots/a/model.onnx   slots/a/meta.json
    slots/b/model.tflite slots/b/meta.json
    active.json          {"active": "a", "previous": "b"}

A new model is staged into the slot that is not active, so the running model
is never touched; switching is one ``os.replace`` of ``active.json``.  The
price of two slots: staging overwrites the previous model, so the pointer
forgets it first and a rollback is only offered while it still exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.storage import atomic_write_bytes, atomic_write_json, read_json
from shared.messages import ModelRef, Runtime

SLOT_NAMES = ("a", "b")
_SUFFIX: dict[str, str] = {"onnxruntime": ".onnx", "litert": ".tflite"}


@dataclass(frozen=True)
class SlotInfo:
    """What a slot holds, read back from its meta.json."""

    slot: str
    model: ModelRef
    runtime: Runtime
    deployment_id: str
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.model_dump(mode="json"),
            "runtime": self.runtime,
            "deployment_id": self.deployment_id,
            "file": self.path.name,
        }


class Slots:
    def __init__(self, data_dir: Path) -> None:
        self._root = data_dir / "slots"
        self._pointer = data_dir / "active.json"
        for name in SLOT_NAMES:
            (self._root / name).mkdir(parents=True, exist_ok=True)

    # -- reading -------------------------------------------------------------
    def active(self) -> SlotInfo | None:
        return self._info(self._read_pointer().get("active"))

    def previous(self) -> SlotInfo | None:
        return self._info(self._read_pointer().get("previous"))

    # -- writing -------------------------------------------------------------
    def stage(self, *, model: ModelRef, runtime: Runtime, deployment_id: str, data: bytes) -> SlotInfo:
        """Write ``data`` into the inactive slot; the active model keeps serving meanwhile."""
        pointer = self._read_pointer()
        target = "b" if pointer.get("active") == "a" else "a"
        if pointer.get("previous") == target:
            self._write_pointer(pointer.get("active"), None)
        slot_dir = self._root / target
        for old in slot_dir.glob("model.*"):
            old.unlink(missing_ok=True)
        (slot_dir / "meta.json").unlink(missing_ok=True)
        info = SlotInfo(target, model, runtime, deployment_id, slot_dir / f"model{_SUFFIX[runtime]}")
        atomic_write_bytes(info.path, data)
        atomic_write_json(slot_dir / "meta.json", info.to_json())
        return info

    def activate(self, slot: str) -> None:
        """Make ``slot`` active and remember the one it replaces for rollback."""
        current = self._read_pointer().get("active")
        self._write_pointer(slot, current if current != slot else None)

    def rollback(self) -> SlotInfo:
        """Swap active and previous; raises LookupError when there is nothing to go back to."""
        pointer = self._read_pointer()
        previous = self._info(pointer.get("previous"))
        if previous is None:
            raise LookupError("no previous model to roll back to")
        self._write_pointer(previous.slot, pointer.get("active"))
        return previous

    def clear_active(self) -> None:
        """No model at all: a first install failed its watch and there is nothing older to serve."""
        self._write_pointer(None, None)

    # -- internals -------------------------------------------------------------
    def _read_pointer(self) -> dict[str, Any]:
        data = read_json(self._pointer)
        return data if isinstance(data, dict) else {}

    def _write_pointer(self, active: str | None, previous: str | None) -> None:
        atomic_write_json(self._pointer, {"active": active, "previous": previous})

    def _info(self, slot: object) -> SlotInfo | None:
        if slot not in SLOT_NAMES:
            return None
        assert isinstance(slot, str)
        meta = read_json(self._root / slot / "meta.json")
        if not isinstance(meta, dict):
            return None
        try:
            path = self._root / slot / str(meta["file"])
            info = SlotInfo(slot, ModelRef.model_validate(meta["model"]), meta["runtime"], meta["deployment_id"], path)
        except (KeyError, ValueError):
            return None
        return info if path.exists() else None


__all__ = ["SLOT_NAMES", "SlotInfo", "Slots"]
