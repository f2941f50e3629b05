from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from controller.api.deps import AdminAuth, ReadAuth, SessionDep, SettingsDep, StoreDep
from controller.api.schemas import ModelVersionOut
from controller.errors import InvalidRequestError
from controller.services import models as svc

router = APIRouter(prefix="/models", tags=["models"])

_CHUNK = 1 << 20


def _read_limited(upload: UploadFile, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = upload.file.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise InvalidRequestError(f"{what} exceeds the upload limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_card(card: str | None) -> dict[str, Any] | None:
    if not card:
        return None
    try:
        parsed = json.loads(card)
    except ValueError as exc:
        raise InvalidRequestError(f"card is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidRequestError("card must be a JSON object")
    return parsed


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelVersionOut, dependencies=[AdminAuth])
def upload_model(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    file: Annotated[UploadFile, File(description="ONNX (.onnx) or LiteRT (.tflite) model")],
    name: Annotated[str, Form(min_length=1, max_length=128)],
    runtime: Annotated[str | None, Form(description="onnxruntime or litert; guessed from the file if absent")] = None,
    profile: Annotated[str | None, Form()] = None,
    samples: Annotated[UploadFile | None, File(description="npz with array x, for self-test vectors")] = None,
    card: Annotated[str | None, Form(description="model card, a JSON object (e.g. from edgefleet compress)")] = None,
) -> ModelVersionOut:
    card_dict = _parse_card(card)
    data = _read_limited(file, settings.max_upload_bytes, "model file")
    sample_bytes = _read_limited(samples, settings.max_upload_bytes, "samples") if samples is not None else None
    mv = svc.register_model(
        session=session,
        store=store,
        name=name,
        data=data,
        runtime=runtime or None,
        profile=profile or None,
        samples=sample_bytes or None,
        filename=file.filename or "",
        card=card_dict,
        self_test_count=settings.self_test_vectors,
    )
    return ModelVersionOut.of(mv)


@router.get("", response_model=list[ModelVersionOut], dependencies=[ReadAuth])
def list_models(session: SessionDep, name: str | None = None) -> list[ModelVersionOut]:
    return [ModelVersionOut.of(mv) for mv in svc.list_models(session=session, name=name)]


@router.get("/{name}/versions/{version}", response_model=ModelVersionOut, dependencies=[ReadAuth])
def get_model_version(name: str, version: int, session: SessionDep) -> ModelVersionOut:
    return ModelVersionOut.of(svc.get_model_version(session=session, name=name, version=version))


@router.get(
    "/{name}/versions/{version}/artifact",
    dependencies=[ReadAuth],
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_artifact(name: str, version: int, session: SessionDep, store: StoreDep) -> Response:
    mv = svc.get_model_version(session=session, name=name, version=version)
    data = store.read(mv.sha256)
    suffix = ".tflite" if mv.runtime == "litert" else ".onnx"
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{mv.name}-v{mv.version}{suffix}"',
            "X-Sha256": mv.sha256,
        },
    )
