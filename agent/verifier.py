"""Decide whether to trust a manifest, a command or artifact bytes.  No IO, no clock.

Like python-tuf's trusted metadata set, every function here takes what it
needs as arguments (the pinned key, the profile, the active model, the time)
and either returns or raises a :class:`shared.errors.VerificationError`
subclass whose ``reason`` goes into the refusal event.  The updater does the
IO and decides what a failure means.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agent.trust import PinnedKey
from shared import blocks
from shared.errors import (
    BudgetError,
    ExpiredError,
    HashMismatchError,
    IncompatibleError,
    RollbackError,
    SizeMismatchError,
)
from shared.messages import Command, DesiredState, ModelRef
from shared.profiles import DeviceProfile


@dataclass(frozen=True)
class TrustContext:
    """What this device trusts and can run; fixed for the agent's lifetime."""

    device_id: str
    profile: DeviceProfile
    runtimes: frozenset[str]
    public_key: PinnedKey


def verify_manifest(manifest: DesiredState, ctx: TrustContext, *, active: ModelRef | None, now: float) -> None:
    """Everything checkable before downloading a byte; the signature first, so nothing unsigned is parsed further."""
    _verify_signature(manifest, ctx.public_key)
    _check_expiry(manifest.expires_at, now)
    _check_target(manifest, ctx)
    _check_budget(manifest, ctx.profile)
    _check_consistency(manifest)
    _check_version(manifest, active)


def verify_command(command: Command, ctx: TrustContext, *, now: float) -> None:
    _verify_signature(command, ctx.public_key)
    _check_expiry(command.expires_at, now)
    if command.device_id != ctx.device_id:
        raise IncompatibleError(f"command for device {command.device_id!r}, this is {ctx.device_id!r}")


def _verify_signature(message: DesiredState | Command, key: PinnedKey) -> None:
    key.verify(message)


def verify_wire(manifest: DesiredState, data: bytes) -> None:
    """The reassembled transfer bytes match what the manifest announced."""
    _check_bytes(data, manifest.wire_size, manifest.wire_sha256, "wire bytes")


def verify_artifact(manifest: DesiredState, data: bytes) -> None:
    """The (decoded) model file is exactly the one that was signed."""
    _check_bytes(data, manifest.size, manifest.model.sha256, "artifact")


def _check_bytes(data: bytes, size: int, sha256: str, what: str) -> None:
    if len(data) != size:
        raise SizeMismatchError(f"{what}: {len(data)} bytes, manifest says {size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise HashMismatchError(f"{what}: sha256 {digest[:16]}…, manifest says {sha256[:16]}…")


def _check_expiry(expires_at: float | None, now: float) -> None:
    if expires_at is not None and now >= expires_at:
        raise ExpiredError(f"expired {now - expires_at:.0f}s ago")


def _check_target(manifest: DesiredState, ctx: TrustContext) -> None:
    if manifest.device_id != ctx.device_id:
        raise IncompatibleError(f"manifest for device {manifest.device_id!r}, this is {ctx.device_id!r}")
    if manifest.profile != ctx.profile.name:
        raise IncompatibleError(f"manifest for profile {manifest.profile!r}, this device is {ctx.profile.name!r}")
    if manifest.runtime not in ctx.runtimes:
        raise IncompatibleError(f"runtime {manifest.runtime!r} not available (have {sorted(ctx.runtimes)})")


def _check_budget(manifest: DesiredState, profile: DeviceProfile) -> None:
    limit = profile.max_artifact_bytes
    for what, size in (("artifact", manifest.size), ("wire", manifest.wire_size)):
        if size > limit:
            raise BudgetError(f"{what} size {size} exceeds the {profile.name} budget of {limit} bytes")


def _check_consistency(manifest: DesiredState) -> None:
    """A signed manifest can still be self-contradictory (a controller bug); refuse before downloading."""
    expected = blocks.block_count(manifest.wire_size, manifest.block_size)
    if manifest.block_count != expected:
        raise SizeMismatchError(f"block_count {manifest.block_count}, wire_size/block_size gives {expected}")
    if manifest.encoding == "identity":
        if manifest.wire_size != manifest.size:
            raise SizeMismatchError(f"identity encoding but wire_size {manifest.wire_size} != size {manifest.size}")
        if manifest.wire_sha256 != manifest.model.sha256:
            raise HashMismatchError("identity encoding but wire_sha256 differs from the model sha256")


def _check_version(manifest: DesiredState, active: ModelRef | None) -> None:
    """Versions are per model name; a replayed older manifest of the running model is refused."""
    if active is None or manifest.allow_downgrade or manifest.model.name != active.name:
        return
    if manifest.model.version <= active.version:
        raise RollbackError(
            f"{manifest.model.name} v{manifest.model.version} is not newer than the active v{active.version}"
        )


__all__ = [
    "TrustContext",
    "verify_artifact",
    "verify_command",
    "verify_manifest",
    "verify_wire",
]
