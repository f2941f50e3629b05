"""Bytes <-> message models.

Every payload received from MQTT goes through :func:`decode`, which turns any
failure (size, UTF-8, JSON, schema) into :class:`ProtocolError` so callers
have exactly one exception to count and log.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import ProtocolError

#: JSON messages are small; anything larger is an attack or a bug.  Manifests
#: carry self-test vectors, which is what drives this bound.
MAX_JSON_PAYLOAD = 256 * 1024

M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    """Compact JSON; ``None`` fields are kept so the shape is explicit."""
    return message.model_dump_json().encode("utf-8")


def decode(payload: bytes | bytearray | memoryview, model: type[M]) -> M:
    """Parse ``payload`` as ``model`` or raise ProtocolError saying why."""
    if len(payload) > MAX_JSON_PAYLOAD:
        raise ProtocolError(f"{model.__name__}: payload of {len(payload)} bytes exceeds {MAX_JSON_PAYLOAD}")
    if len(payload) == 0:
        raise ProtocolError(f"{model.__name__}: empty payload")
    try:
        return model.model_validate_json(bytes(payload))
    except ValidationError as exc:
        raise ProtocolError(f"{model.__name__}: {_summarise(exc)}") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # pragma: no cover - pydantic wraps most
        raise ProtocolError(f"{model.__name__}: {exc}") from exc


def _summarise(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "<root>"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {first.get('msg')}{more}"


def canonical_json(data: object) -> bytes:
    """Deterministic JSON used for signing: sorted keys, no whitespace."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


__all__ = ["MAX_JSON_PAYLOAD", "canonical_json", "decode", "encode"]
