"""Model registry: register a model file as the next version of a name.

Used by the upload route and by the compression engine, which registers the
artifact it built together with its model card::

    register_model(session=s, store=store, name="digits", file_path=p,
                   runtime="litert", profile="smart-lock", card={...})
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.artifacts import ArtifactStore
from controller.db.models import ModelVersion
from controller.errors import InvalidRequestError, NotFoundError
from controller.modelfiles import ModelFileError, guess_runtime, load_samples, self_test_vectors
from controller.services.devices import check_profile
from shared.profiles import BUILTIN_PROFILES

log = logging.getLogger("edgefleet.controller.models")

RUNTIMES = ("onnxruntime", "litert")
MAX_NAME = 128


def register_model(
    *,
    session: Session,
    store: ArtifactStore,
    name: str,
    file_path: Path | str | None = None,
    data: bytes | None = None,
    runtime: str | None = None,
    profile: str | None = None,
    card: dict[str, Any] | None = None,
    samples: np.ndarray[Any, Any] | bytes | Path | str | None = None,
    filename: str = "",
    self_test_count: int = 4,
    max_bytes: int | None = None,
) -> ModelVersion:
    """Validate, store and record a model file; returns the new ModelVersion (version = previous + 1).

    ``samples`` is an array of inputs or an ``.npz`` (bytes or path) with ``x``;
    the first ``self_test_count`` rows become the manifest's self-test vectors.
    Raises InvalidRequestError for a bad name/runtime/profile/file, StorageError for IO.
    """
    if not name or len(name) > MAX_NAME or name.strip() != name:
        raise InvalidRequestError(f"invalid model name {name!r}: 1-{MAX_NAME} characters, no surrounding spaces")
    if (file_path is None) == (data is None):
        raise InvalidRequestError("give exactly one of file_path or data")
    if file_path is not None:
        path = Path(file_path)
        filename = filename or path.name
        data = path.read_bytes()
    assert data is not None
    if not data:
        raise InvalidRequestError("model file is empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidRequestError(f"model file of {len(data)} bytes exceeds the upload limit of {max_bytes}")
    if profile is not None:
        check_profile(profile)
    try:
        runtime = runtime or guess_runtime(data, filename)
        if runtime not in RUNTIMES:
            raise InvalidRequestError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
        if profile is not None and BUILTIN_PROFILES[profile].runtime != runtime:
            raise InvalidRequestError(
                f"profile {profile} runs {BUILTIN_PROFILES[profile].runtime}, but the artifact is for {runtime}"
            )
        x = _samples_array(samples)
        vectors = self_test_vectors(data, runtime, x, count=self_test_count)
    except ModelFileError as exc:
        raise InvalidRequestError(f"bad model upload: {exc}") from exc

    stored = store.put(data)
    for _attempt in range(5):
        latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))
        mv = ModelVersion(
            name=name,
            version=(latest or 0) + 1,
            runtime=runtime,
            profile=profile,
            sha256=stored.sha256,
            size=stored.size,
            encoding=stored.encoding,
            wire_sha256=stored.wire_sha256,
            wire_size=stored.wire_size,
            filename=filename[:256],
            card=dict(card or {}),
            self_test=[v.model_dump(mode="json") for v in vectors],
        )
        session.add(mv)
        try:
            session.commit()
        except IntegrityError:  # a concurrent upload took this version number
            session.rollback()
            continue
        log.info(
            "registered model %s v%d (%s, %d bytes, wire %s %d bytes, %d self-test vectors)",
            name,
            mv.version,
            runtime,
            stored.size,
            stored.encoding,
            stored.wire_size,
            len(vectors),
        )
        return mv
    raise InvalidRequestError(f"could not allocate a version for model {name!r}; retry")


def _samples_array(samples: np.ndarray[Any, Any] | bytes | Path | str | None) -> np.ndarray[Any, Any] | None:
    if samples is None:
        return None
    if isinstance(samples, np.ndarray):
        return samples
    if isinstance(samples, (str, Path)):
        samples = Path(samples).read_bytes()
    return load_samples(samples)


def list_models(*, session: Session, name: str | None = None) -> Sequence[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
    if name is not None:
        stmt = stmt.where(ModelVersion.name == name)
    return session.scalars(stmt).all()


def get_model_version(*, session: Session, name: str, version: int) -> ModelVersion:
    mv = session.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version))
    if mv is None:
        raise NotFoundError(f"unknown model {name!r} version {version}")
    return mv


def find_by_wire_sha(*, session: Session, sha256: str) -> ModelVersion | None:
    """The newest version whose wire bytes (or, failing that, file) hash to ``sha256``."""
    mv = session.scalar(
        select(ModelVersion).where(ModelVersion.wire_sha256 == sha256).order_by(ModelVersion.id.desc()).limit(1)
    )
    if mv is None:
        mv = session.scalar(
            select(ModelVersion).where(ModelVersion.sha256 == sha256).order_by(ModelVersion.id.desc()).limit(1)
        )
    return mv


__all__ = ["RUNTIMES", "find_by_wire_sha", "get_model_version", "list_models", "register_model"]
