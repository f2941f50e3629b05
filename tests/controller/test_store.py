"""Artifact store and database layer: atomic writes, hash checks, zstd choice, SQLite pragmas, PostgreSQL."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from controller.artifacts import ArtifactStore
from controller.db import Device, make_engine, make_sessionmaker
from controller.errors import NotFoundError, StorageError
from controller.main import create_app
from controller.services.deployments import Target, create_deployment
from controller.services.devices import create_device, list_devices
from controller.services.ingest import Incoming, apply_batch
from controller.services.models import get_model_version, register_model
from controller.settings import Settings
from shared import codec, signing
from shared.messages import DesiredState, Telemetry

from .conftest import make_onnx


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = os.urandom(5000)
    a = store.put(data)
    assert a.sha256 == hashlib.sha256(data).hexdigest() and a.size == 5000
    assert a.encoding == "identity" and a.wire_sha256 == a.sha256  # random bytes do not compress
    assert store.path(a.sha256) == tmp_path / a.sha256[:2] / a.sha256
    assert store.put(data) == a
    assert store.read(a.sha256) == data
    assert not list(tmp_path.rglob(".tmp-*"))


def test_zstd_wire_copy_when_smaller(tmp_path: Path) -> None:
    data = b"abc" * 10_000
    a = ArtifactStore(tmp_path).put(data)
    assert a.encoding == "zstd" and a.wire_size < a.size
    wire = ArtifactStore(tmp_path).read_wire(a.sha256, a.encoding, a.wire_sha256)
    assert hashlib.sha256(wire).hexdigest() == a.wire_sha256
    off = ArtifactStore(tmp_path / "off", zstd=False).put(data)
    assert off.encoding == "identity" and off.wire_size == off.size


def test_corruption_detected_on_read(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    a = store.put(b"model bytes" * 100)
    store.path(a.sha256).write_bytes(b"flipped")
    with pytest.raises(StorageError, match="corrupt"):
        ArtifactStore(tmp_path).read(a.sha256)
    with pytest.raises(NotFoundError):
        store.read("00" * 32)


def test_disk_full_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(tmp_path)

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError) as info:
        store.put(b"x" * 1000)
    assert info.value.status_code == 507 and "disk full" in str(info.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_upload_on_full_disk_is_507_and_not_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_model: bytes
) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, mqtt_enabled=False))) as c:
        monkeypatch.setattr(os, "fsync", lambda *_a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        r = c.post("/api/v1/models", files={"file": ("m.onnx", onnx_model)}, data={"name": "m"})
        assert r.status_code == 507 and "disk full" in r.json()["detail"]
        monkeypatch.setattr(os, "fsync", lambda *_a: (_ for _ in ()).throw(OSError(errno.EIO, "io")))
        r = c.post("/api/v1/models", files={"file": ("m.onnx", onnx_model)}, data={"name": "m"})
        assert r.status_code == 500 and "write failed" in r.json()["detail"]
        assert c.get("/api/v1/models").json() == []


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000
    engine.dispose()


def test_register_model_service_with_card_and_file_path(tmp_path: Path) -> None:
    """The entry point the compression engine uses."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions = make_sessionmaker(engine)
    model_path = tmp_path / "small.onnx"
    model_path.write_bytes(make_onnx(seed=2))
    samples = np.ones((3, 8), dtype=np.float32)
    with sessions() as s:
        mv = register_model(
            session=s,
            store=ArtifactStore(tmp_path / "a"),
            name="digits",
            file_path=model_path,
            runtime="onnxruntime",
            profile="car-ecu",
            card={"accuracy": 0.97, "passes": ["int8"]},
            samples=samples,
        )
        assert (mv.version, mv.profile, mv.card["accuracy"], len(mv.self_test)) == (1, "car-ecu", 0.97, 3)
        assert mv.filename == "small.onnx"
    with sessions() as s:
        assert get_model_version(session=s, name="digits", version=1).card == {"accuracy": 0.97, "passes": ["int8"]}
    engine.dispose()


def _exercise_store(url: str, tmp_path: Path) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    key = signing.generate_private_key()
    with sessions() as s:
        create_device(session=s, device_id="pg-1", profile="car-ecu", group="g", tags=["x"])
        mv = register_model(session=s, store=ArtifactStore(tmp_path / "a"), name="m", data=make_onnx())
        published: list[tuple[str, bytes]] = []
        dep = create_deployment(
            session=s,
            key=key,
            model="m",
            version=mv.version,
            target=Target(group="g"),
            block_size=4096,
            ttl_s=60,
            publish=lambda d, p: published.append((d, p)),
        )
        assert len(published) == 1
        desired = codec.decode(published[0][1], DesiredState)
        signing.verify(desired, key.public_key())
        assert desired.deployment_id == dep.id
        tel = Telemetry(device_id="pg-1", seq=1, interval_s=1.0, count=1, rss_bytes=5 << 30)
        result = apply_batch(session=s, items=[Incoming("telemetry", tel, 1.0)])
        assert result.stored == {"telemetry": 1}
    with sessions() as s:
        (device,) = list_devices(session=s)
        assert isinstance(device, Device) and device.tags == ["x"] and device.last_telemetry is not None
    engine.dispose()


def test_store_on_sqlite(tmp_path: Path) -> None:
    _exercise_store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)


@pytest.mark.postgres
def test_store_on_postgres(tmp_path: Path) -> None:
    url = os.environ.get("EDGEFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = create_engine(url, connect_args={"connect_timeout": 3})
    schema = f"edgefleet_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {url}: {str(exc).splitlines()[0]}")
    try:
        sep = "&" if "?" in url else "?"
        _exercise_store(f"{url}{sep}options=-csearch_path%3D{schema}", tmp_path)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_retention_prunes_old_rows(tmp_path: Path) -> None:
    from controller.db import EventRow, TelemetryRow
    from controller.services.ingest import prune
    from shared.messages import Event, EventKind

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        create_device(session=s, device_id="r1", profile="car-ecu")
        old = Telemetry(device_id="r1", seq=1, interval_s=1.0, count=1)
        new = Telemetry(device_id="r1", seq=2, interval_s=1.0, count=1)
        ev = Event(device_id="r1", kind=EventKind.DOWNLOADING)
        apply_batch(
            session=s,
            items=[Incoming("telemetry", old, 100.0), Incoming("events", ev, 100.0), Incoming("telemetry", new, 1e10)],
        )
        assert prune(session=s, older_than=1000.0) == 2
        assert [r.seq for r in s.query(TelemetryRow).all()] == [2] and s.query(EventRow).count() == 0
    engine.dispose()


def test_ingest_worker_isolates_a_poisoned_message(tmp_path: Path) -> None:
    """A value the database refuses drops that message only, not the rest of its batch."""
    from controller.metrics import ControllerMetrics
    from controller.mqtt.ingest import IngestWorker

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        create_device(session=s, device_id="p1", profile="car-ecu")
    metrics = ControllerMetrics()
    worker = IngestWorker(sessions=sessions, metrics=metrics, batch_size=10)
    good = [Incoming("telemetry", Telemetry(device_id="p1", seq=i, interval_s=1.0, count=1), 1.0) for i in range(3)]
    poisoned = Incoming("telemetry", Telemetry(device_id="p1", seq=2**70, interval_s=1.0, count=1), 1.0)
    worker._flush([good[0], poisoned, good[1], good[2]])
    with sessions() as s:
        from controller.db import TelemetryRow

        assert sorted(r.seq for r in s.query(TelemetryRow).all()) == [0, 1, 2]
    assert metrics.messages_rejected.labels("telemetry", "db_error")._value.get() == 1
    assert metrics.messages_ingested.labels("telemetry")._value.get() == 3
    engine.dispose()
