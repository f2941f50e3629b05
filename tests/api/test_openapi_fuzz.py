"""Property-based fuzzing of the REST API from its own OpenAPI document.

Whatever body, query or path a client sends, the controller answers with a
clear 4xx or a success, never a 5xx.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from controller.main import create_app  # noqa: E402
from controller.settings import Settings  # noqa: E402

_DATA = Path(tempfile.mkdtemp(prefix="edgefleet-fuzz-"))
app = create_app(Settings(data_dir=_DATA, mqtt_enabled=False))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# Invalid bodies, queries and paths too, not only what the schema allows.
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE], deterministic=True
)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(checks=[not_a_server_error])
