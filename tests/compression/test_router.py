"""REST background job: upload an ONNX model, compress it for a profile, get the registered result."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from controller.main import create_app
from controller.settings import Settings


def _wait(client: TestClient, job_id: str, timeout: float = 90.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/compressions/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError("compression job did not finish")


def test_compression_job_registers_artifact_with_card(tmp_path: Path, mlp_onnx: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path / "ctl", mqtt_enabled=False))) as client:
        r = client.post(
            "/api/v1/models",
            data={"name": "digits"},
            files={"file": ("digits.onnx", mlp_onnx.read_bytes(), "application/octet-stream")},
        )
        assert r.status_code == 201, r.text
        r = client.post(
            "/api/v1/compressions", data={"model": "digits", "version": "1", "profile": "car-ecu", "data": "digits"}
        )
        assert r.status_code == 202, r.text
        job = _wait(client, r.json()["id"])
        assert job["status"] == "succeeded", job
        reg = job["result"]["registered"]
        assert reg["name"] == "digits-car-ecu" and reg["version"] == 1
        assert all(v["met"] for v in job["result"]["limits"].values())
        mv = client.get(f"/api/v1/models/{reg['name']}/versions/{reg['version']}").json()
        card = mv["card"] if isinstance(mv["card"], dict) else json.loads(mv["card"])
        assert card["source"]["registry"] == {"name": "digits", "version": 1}
        assert card["profile"]["name"] == "car-ecu" and card["limits_met"] is True
        # an impossible profile is not the case here; a bad request is refused up front
        bad = client.post(
            "/api/v1/compressions", data={"model": "digits", "version": "1", "profile": "nope", "data": "digits"}
        )
        assert bad.status_code == 400
        assert client.get("/api/v1/compressions/unknown").status_code == 404
