"""REST API against a real SQLite file (MQTT side off)."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import types
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from controller.api.deps import AdminAuth, SessionDep, SettingsDep, StoreDep
from controller.main import create_app
from controller.settings import Settings
from shared import signing

from .conftest import make_onnx, make_samples

API = "/api/v1"


def upload(client: TestClient, data: bytes, name: str = "tiny", filename: str = "m.onnx", **form: str) -> dict:
    r = client.post(f"{API}/models", files={"file": (filename, data)}, data={"name": name, **form})
    assert r.status_code == 201, r.text
    return r.json()


def test_health_docs_dashboard(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert f"{API}/deployments" in schema["paths"]
    page = client.get("/")
    assert (
        page.status_code == 200
        and "<svg" in page.text
        and "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")
    )


def test_profiles(client: TestClient) -> None:
    names = [p["name"] for p in client.get(f"{API}/profiles").json()]
    assert {"smart-lock", "car-ecu", "medical-monitor"} <= set(names)
    assert client.get(f"{API}/profiles/car-ecu").json()["runtime"] == "onnxruntime"
    assert client.get(f"{API}/profiles/toaster").status_code == 404


def test_device_crud_and_bad_bodies(client: TestClient) -> None:
    r = client.post(f"{API}/devices", json={"device_id": "car-1", "profile": "car-ecu", "group": "eu", "tags": ["a"]})
    assert r.status_code == 201
    assert r.json()["online"] is False
    client.post(f"{API}/devices", json={"device_id": "lock-1", "profile": "smart-lock"})
    dup = client.post(f"{API}/devices", json={"device_id": "car-1", "profile": "car-ecu"})
    assert dup.status_code == 409 and "already exists" in dup.json()["detail"]
    bad_profile = client.post(f"{API}/devices", json={"device_id": "x1", "profile": "toaster"})
    assert bad_profile.status_code == 422 and "unknown profile" in bad_profile.json()["detail"]
    for body in (
        {"device_id": "bad id!", "profile": "car-ecu"},
        {"device_id": "a" * 65, "profile": "car-ecu"},
        {"profile": "car-ecu"},
        {"device_id": "ok", "profile": "car-ecu", "surprise": 1},
    ):
        r = client.post(f"{API}/devices", json=body)
        assert r.status_code == 422, body
        assert r.json()["detail"]
    assert (
        client.post(f"{API}/devices", content=b"not json", headers={"content-type": "application/json"}).status_code
        == 422
    )

    assert [d["device_id"] for d in client.get(f"{API}/devices").json()] == ["car-1", "lock-1"]
    assert [d["device_id"] for d in client.get(f"{API}/devices", params={"profile": "smart-lock"}).json()] == ["lock-1"]
    assert [d["device_id"] for d in client.get(f"{API}/devices", params={"group": "eu"}).json()] == ["car-1"]
    page = client.get(f"{API}/devices", params={"limit": 1, "offset": 1}).json()
    assert [d["device_id"] for d in page] == ["lock-1"]
    one = client.get(f"{API}/devices/car-1").json()
    assert one["tags"] == ["a"] and one["state"] is None and one["last_telemetry"] is None
    assert client.get(f"{API}/devices/nope").status_code == 404
    assert client.get(f"{API}/devices/car-1/telemetry").json() == []
    assert client.get(f"{API}/devices/car-1/events", params={"limit": 5}).json() == []
    assert client.get(f"{API}/devices/car-1/events", params={"limit": 0}).status_code == 422


def test_upload_onnx_versions_and_artifact(client: TestClient, onnx_model: bytes) -> None:
    r = client.post(
        f"{API}/models",
        files={"file": ("tiny.onnx", onnx_model), "samples": ("s.npz", make_samples())},
        data={"name": "tiny"},
    )
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert v1["version"] == 1 and v1["runtime"] == "onnxruntime"
    assert v1["sha256"] == hashlib.sha256(onnx_model).hexdigest() and v1["size"] == len(onnx_model)
    assert v1["self_test_vectors"] == 4
    v2 = upload(client, make_onnx(seed=3), name="tiny")
    assert v2["version"] == 2 and v2["self_test_vectors"] == 4  # random inputs without samples
    assert upload(client, onnx_model, name="other")["version"] == 1
    listed = client.get(f"{API}/models").json()
    assert [(m["name"], m["version"]) for m in listed] == [("other", 1), ("tiny", 1), ("tiny", 2)]
    meta = client.get(f"{API}/models/tiny/versions/1").json()
    assert meta["card"] == {} and meta["profile"] is None
    art = client.get(f"{API}/models/tiny/versions/1/artifact")
    assert art.status_code == 200 and art.content == onnx_model
    assert client.get(f"{API}/models/tiny/versions/9").status_code == 404
    assert client.get(f"{API}/models/nope/versions/1/artifact").status_code == 404


def test_upload_tflite(client: TestClient, tflite_model: bytes) -> None:
    card = '{"accuracy": 0.95, "passes": ["int8"]}'
    meta = upload(client, tflite_model, name="lockmodel", filename="m.tflite", profile="smart-lock", card=card)
    assert meta["runtime"] == "litert" and meta["profile"] == "smart-lock"
    assert meta["self_test_vectors"] >= 1
    assert client.get(f"{API}/models/lockmodel/versions/1").json()["card"] == {"accuracy": 0.95, "passes": ["int8"]}


@pytest.mark.parametrize(
    ("filename", "data", "form", "needle"),
    [
        ("m.onnx", b"", {}, "empty"),
        ("m.onnx", b"\x08garbage-not-a-model", {}, "ONNX"),
        ("m.tflite", b"\x00\x00\x00\x00TFL3" + b"\x00" * 40, {}, "LiteRT"),
        ("m.bin", b"hello world", {}, "runtime"),
        ("m.onnx", None, {"runtime": "tensorrt"}, "runtime"),
        ("m.onnx", None, {"profile": "toaster"}, "profile"),
        ("m.onnx", None, {"runtime": "litert"}, "LiteRT"),
        ("m.onnx", None, {"profile": "smart-lock"}, "runs litert"),
        ("m.onnx", None, {"card": "{nope"}, "card"),
        ("m.onnx", None, {"card": "[1]"}, "card"),
    ],
)
def test_bad_uploads(
    client: TestClient, onnx_model: bytes, filename: str, data: bytes | None, form: dict, needle: str
) -> None:
    r = client.post(
        f"{API}/models", files={"file": (filename, onnx_model if data is None else data)}, data={"name": "m", **form}
    )
    assert r.status_code == 422, r.text
    assert needle.lower() in r.json()["detail"].lower()
    assert client.get(f"{API}/models").json() == []


def test_bad_samples_and_missing_name(client: TestClient, onnx_model: bytes) -> None:
    r = client.post(
        f"{API}/models", files={"file": ("m.onnx", onnx_model), "samples": ("s.npz", b"nope")}, data={"name": "m"}
    )
    assert r.status_code == 422 and "samples" in r.json()["detail"]
    r = client.post(f"{API}/models", files={"file": ("m.onnx", onnx_model)})
    assert r.status_code == 422 and "name" in r.json()["detail"]


def test_upload_too_big(tmp_path: Path, onnx_model: bytes) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, mqtt_enabled=False, max_upload_bytes=100))) as c:
        r = c.post(f"{API}/models", files={"file": ("m.onnx", onnx_model)}, data={"name": "m"})
        assert r.status_code == 422 and "limit" in r.json()["detail"]


def test_deployment_validation(client: TestClient, onnx_model: bytes, tflite_model: bytes) -> None:
    client.post(f"{API}/devices", json={"device_id": "car-1", "profile": "car-ecu", "group": "g"})
    client.post(f"{API}/devices", json={"device_id": "lock-1", "profile": "smart-lock", "group": "g"})
    upload(client, onnx_model, name="tiny")
    upload(client, make_onnx(n_in=512, n_out=1100, seed=5), name="big")  # > 2 MiB: over car-ecu budget

    def deploy(body: dict) -> tuple[int, str]:
        r = client.post(f"{API}/deployments", json=body)
        return r.status_code, r.json().get("detail", "") if r.status_code != 201 else r.json()["id"]

    assert deploy({"model": "nope", "version": 1, "target": {"device_ids": ["car-1"]}})[0] == 404
    code, detail = deploy({"model": "tiny", "version": 1, "target": {"group": "g"}})
    assert code == 422 and "lock-1" in detail and "litert" in detail
    code, detail = deploy({"model": "big", "version": 1, "target": {"device_ids": ["car-1"]}})
    assert code == 422 and "max_artifact_bytes" in detail
    code, detail = deploy({"model": "tiny", "version": 1, "target": {"device_ids": ["ghost"]}})
    assert code == 422 and "ghost" in detail
    code, detail = deploy({"model": "tiny", "version": 1, "target": {}})
    assert code == 422 and "empty" in detail
    assert deploy({"model": "tiny", "version": 1, "target": {"device_ids": ["bad id"]}})[0] == 422
    assert deploy({"model": "tiny", "version": 0, "target": {"device_ids": ["car-1"]}})[0] == 422
    code, dep_id = deploy({"model": "tiny", "version": 1, "target": {"profile": "car-ecu"}})
    assert code == 201
    dep = client.get(f"{API}/deployments/{dep_id}").json()
    assert dep["state"] == "in_progress" and dep["counts"] == {"pending": 1}
    assert [d["device_id"] for d in dep["devices"]] == ["car-1"]
    assert client.get(f"{API}/deployments/nope").status_code == 404
    assert [d["id"] for d in client.get(f"{API}/deployments").json()] == [dep_id]
    # litert artifact to the lock works
    upload(client, tflite_model, name="lockmodel", filename="m.tflite")
    assert deploy({"model": "lockmodel", "version": 1, "target": {"device_ids": ["lock-1"]}})[0] == 201


def test_auth_roles(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mqtt_enabled=False, admin_token="adm", read_token="rd")
    with TestClient(create_app(settings)) as c:
        body = {"device_id": "d1", "profile": "car-ecu"}
        assert c.get(f"{API}/devices").status_code == 401
        assert c.get(f"{API}/devices", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get(f"{API}/devices", headers={"Authorization": "Bearer rd"}).status_code == 200
        assert c.get(f"{API}/devices", headers={"Authorization": "Bearer adm"}).status_code == 200
        assert c.post(f"{API}/devices", json=body).status_code == 401
        assert c.post(f"{API}/devices", json=body, headers={"Authorization": "Bearer rd"}).status_code == 403
        assert c.post(f"{API}/devices", json=body, headers={"Authorization": "Bearer adm"}).status_code == 201
        assert c.get("/healthz").status_code == 200
        assert c.get(f"{API}/keys/public").status_code == 200


def test_public_key_persists_with_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mqtt_enabled=False)
    with TestClient(create_app(settings)) as c:
        first = c.get(f"{API}/keys/public").json()
    key_path = tmp_path / "keys" / "controller.key"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    with TestClient(create_app(settings)) as c:
        assert c.get(f"{API}/keys/public").json() == first
    assert first["key_id"] == signing.key_id(signing.load_public_key(first["public_key_pem"]))


def test_metrics_counts_http(client: TestClient) -> None:
    client.get(f"{API}/devices/nope")
    text = client.get("/metrics").text
    assert (
        'edgefleet_controller_http_requests_total{method="GET",route="/api/v1/devices/{device_id}",status="404"} 1.0'
        in text
    )
    assert "edgefleet_controller_devices_online 0.0" in text


def test_compression_router_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app mounts controller.compression.router when it exists, using the public deps.

    (deps are imported at module level: with postponed annotations FastAPI resolves them from globals.)
    """
    router = APIRouter(prefix="/api/v1/compress", tags=["compression"])

    @router.post("/ping", dependencies=[AdminAuth])
    def ping(session: SessionDep, settings: SettingsDep, store: StoreDep) -> dict[str, str]:
        return {"data_dir": str(settings.data_dir), "store": str(store.root), "db": type(session).__name__}

    fake = types.ModuleType("controller.compression.router")
    fake.router = router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "controller.compression.router", fake)
    settings = Settings(data_dir=tmp_path, mqtt_enabled=False, admin_token="adm")
    with TestClient(create_app(settings)) as c:
        assert c.post("/api/v1/compress/ping").status_code == 401
        r = c.post("/api/v1/compress/ping", headers={"Authorization": "Bearer adm"})
        assert r.status_code == 200 and r.json()["db"] == "Session"


def test_commands_validation_without_mqtt(client: TestClient) -> None:
    client.post(f"{API}/devices", json={"device_id": "c-1", "profile": "car-ecu"})
    assert client.post(f"{API}/devices/nope/commands", json={"kind": "ping"}).status_code == 404
    assert client.post(f"{API}/devices/c-1/commands", json={"kind": "explode"}).status_code == 422
    r = client.post(f"{API}/devices/c-1/commands", json={"kind": "ping"})
    assert r.status_code == 503 and "MQTT" in r.json()["detail"]
