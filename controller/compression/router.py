"""REST: ``POST /api/v1/compressions`` starts a background compression of a registered model
version for a profile; ``GET /api/v1/compressions/{id}`` reports status and result.

The body is multipart (like model upload): ``model``, ``version``, ``profile``, ``seed``, and
either ``data`` (a bundled set name: digits, breast_cancer, iris, wine) or ``data_file`` (npz with
``x`` and optional ``y``).  The source must be an ONNX model version (the REST path has no
PyTorch model, so training passes are skipped - use ``edgefleet compress`` with a module spec for
those).  On success the artifact is registered as the next version of ``register_as``
(default ``{model}-{profile}``) with its model card and self-test samples from the eval split.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile, status

from controller.api.deps import AdminAuth, ReadAuth, SessionDep, StoreDep
from controller.compression.data import BUNDLED, Dataset, load_data
from controller.compression.jobs import Job, JobRunner
from controller.services import models as model_svc
from shared.profiles import BUILTIN_PROFILES

router = APIRouter(prefix="/api/v1/compressions", tags=["compression"])


def _runner(request: Request) -> JobRunner:
    state = request.app.state
    if getattr(state, "compression_jobs", None) is None:
        state.compression_jobs = JobRunner()
    runner: JobRunner = state.compression_jobs
    return runner


def _dataset(data: str | None, data_file: UploadFile | None) -> Dataset:
    if (data is None) == (data_file is None):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"give exactly one of data ({', '.join(BUNDLED)}) or data_file"
        )
    if data is not None:
        if data not in BUNDLED:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"unknown data set {data!r}; bundled: {', '.join(BUNDLED)}"
            )
        return load_data(data)
    try:
        with np.load(io.BytesIO(data_file.file.read())) as z:  # type: ignore[union-attr]
            x = np.asarray(z["x"], dtype=np.float32)
            y = np.asarray(z["y"]).astype(np.int64) if "y" in z else None
    except Exception as e:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"data_file is not an npz with x: {e}") from e
    return Dataset("upload", x, y)


@router.post("", status_code=status.HTTP_202_ACCEPTED, dependencies=[AdminAuth])
def start_compression(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    model: Annotated[str, Form()],
    version: Annotated[int, Form(ge=1)],
    profile: Annotated[str, Form()],
    seed: Annotated[int, Form()] = 0,
    register_as: Annotated[str | None, Form()] = None,
    data: Annotated[str | None, Form(description="bundled data set name")] = None,
    data_file: Annotated[UploadFile | None, File(description="npz with x (and y)")] = None,
) -> dict[str, Any]:
    if profile not in BUILTIN_PROFILES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown profile {profile!r}")
    mv = model_svc.get_model_version(session=session, name=model, version=version)
    if mv.runtime != "onnxruntime":
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "only ONNX model versions can be compressed")
    ds = _dataset(data, data_file)
    source = store.read(mv.sha256)
    target = register_as or f"{model}-{profile}"
    sessions = request.app.state.sessions
    req = {"model": model, "version": version, "profile": profile, "seed": seed, "data": ds.name, "register_as": target}

    def work(job: Job, tmp: Path) -> dict[str, Any]:
        from controller.compression.card import build_card
        from controller.compression.data import fit_shape, split
        from controller.compression.search import compress

        src = tmp / f"{model}-v{version}.onnx"
        src.write_bytes(source)

        def progress(stage: str, i: int, n: int, res: Any) -> None:
            job.progress = {"candidate": i + 1, "of": n, "stage": stage, "name": res.name if res else None}

        result = compress(src, profile, ds, workdir=tmp / "work", seed=seed, progress=progress)
        assert result.best.artifact is not None
        card = build_card(result, result.best.artifact.name)
        card["source"]["registry"] = {"name": model, "version": version}
        samples = fit_shape(split(ds).eval.x[:16], result.source.sample_shape)
        with sessions() as s:
            new = model_svc.register_model(
                session=s,
                store=store,
                name=target,
                file_path=result.best.artifact,
                runtime=result.best.runtime,
                profile=profile,
                card=card,
                samples=samples,
            )
            out = {"name": new.name, "version": new.version, "sha256": new.sha256, "size": new.size}
        return {
            "registered": out,
            "pipeline": result.best.name,
            "metrics": card["metrics"],
            "accuracy_drop_pt": result.best.accuracy_drop_pt,
            "limits": card["limits"],
            "search_seconds": round(result.seconds, 2),
        }

    job = _runner(request).submit(req, work)
    return job.as_dict()


@router.get("", dependencies=[ReadAuth])
def list_compressions(request: Request) -> list[dict[str, Any]]:
    return [j.as_dict() for j in _runner(request).list()]


@router.get("/{job_id}", dependencies=[ReadAuth])
def get_compression(job_id: str, request: Request) -> dict[str, Any]:
    job = _runner(request).get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown compression job {job_id!r}")
    return job.as_dict()
