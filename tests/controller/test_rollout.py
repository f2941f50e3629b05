"""Wave-based rollouts with health gates.

Engine steps on the store alone (fast, deterministic), then the real thing: a controller, real
agents and a real Mosquitto — waves in order, a failing wave pauses, resume, abort with rollback
to the previous model, p95 gates from field telemetry, and a controller restart mid-rollout.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from controller.db.models import DeploymentDevice, Device, Rollout, TelemetryRow
from controller.main import create_app
from controller.rollout import RolloutScheduler, acquire_lease, lease_holder
from controller.services import rollout as svc
from controller.settings import Settings
from controller.testing import RunningController, run_controller
from shared import codec
from shared.messages import DesiredState
from shared.topics import Topics
from simulators.broker import MosquittoProcess
from tests.waiting import wait_until

from .conftest import Probe, make_onnx, make_samples

API = "/api/v1"


# -- planning and validation ------------------------------------------------------------------


def test_plan_waves_is_cumulative_floor_with_min_size() -> None:
    assert svc.plan_waves([34, 100], 3) == [1, 3]
    assert svc.plan_waves([1, 10, 100], 50) == [1, 5, 50]
    assert svc.plan_waves([1, 10, 100], 1000) == [10, 100, 1000]
    assert svc.plan_waves([1, 2, 100], 10) == [1, 2, 10]  # at least one new device per wave
    assert svc.plan_waves([1, 10, 100], 10, min_wave_size=4) == [4, 8, 10]
    assert svc.plan_waves([50, 100], 1) == [1]  # a wave that would add nobody is dropped
    assert svc.plan_waves([100], 7) == [7]


def _rest_setup(client: TestClient, onnx_model: bytes, ids: list[str]) -> None:
    for d in ids:
        assert client.post(f"{API}/devices", json={"device_id": d, "profile": "car-ecu"}).status_code == 201
    files = {"file": ("m.onnx", onnx_model)}
    assert client.post(f"{API}/models", files=files, data={"name": "m"}).status_code == 201
    assert client.post(f"{API}/models", files=files, data={"name": "m"}).status_code == 201  # v2


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"waves": [50, 10, 100]}, "increase strictly"),
        ({"waves": [10, 50]}, "last wave must be 100"),
        ({"waves": [0, 100]}, "waves.0"),
        ({"waves": []}, "waves"),
        ({"min_wave_size": 0}, "min_wave_size"),
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"on_breach": "explode"}, "on_breach"),
        ({"gates": {"max_failure_pct": 150}}, "max_failure_pct"),
        ({"gates": {"max_p95_ms": -1}}, "max_p95_ms"),
        ({"gates": {"min_soak": 5}}, "min_soak"),
    ],
)
def test_rollout_fields_are_validated(
    settings: Settings, onnx_model: bytes, extra: dict[str, Any], needle: str
) -> None:
    client = TestClient(create_app(settings))  # no lifespan: the scheduler does not run
    _rest_setup(client, onnx_model, ["v-1"])
    body = {"model": "m", "version": 1, "target": {"device_ids": ["v-1"]}, **extra}
    r = client.post(f"{API}/deployments", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"], r.json()


def test_plain_deployment_is_unchanged(settings: Settings, onnx_model: bytes) -> None:
    client = TestClient(create_app(settings))
    _rest_setup(client, onnx_model, ["p-1", "p-2"])
    r = client.post(f"{API}/deployments", json={"model": "m", "version": 1, "target": {"device_ids": ["p-1", "p-2"]}})
    assert r.status_code == 201
    dep = r.json()
    assert dep["rollout"] is None and dep["counts"] == {"pending": 2} and dep["state"] == "in_progress"
    assert client.post(f"{API}/deployments/{dep['id']}/resume").status_code == 409
    assert client.post(f"{API}/deployments/nope/abort").status_code == 404


# -- the engine on the store alone ------------------------------------------------------------


class Engine:
    """Drives controller.services.rollout.advance by hand and plays the devices' side in the DB."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.app = client.app
        self.published: list[str] = []

    def step(self, now: float | None = None) -> svc.StepResult:
        with self.app.state.sessions() as session:  # type: ignore[attr-defined]
            result = svc.advance(session=session, key=self.app.state.signing_key, now=now)  # type: ignore[attr-defined]
        self.published += [d for d, _ in result.payloads]
        return result

    def set_state(self, dep_id: str, device_id: str, state: str, reason: str | None = None) -> None:
        with self.app.state.sessions() as session:  # type: ignore[attr-defined]
            row = session.get(DeploymentDevice, (dep_id, device_id))
            assert row is not None
            row.state, row.reason, row.updated_at = state, reason, time.time()
            session.commit()

    def dep(self, dep_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.client.get(f"{API}/deployments/{dep_id}").json()
        return data

    def states(self, dep_id: str) -> dict[str, str]:
        return {d["device_id"]: d["state"] for d in self.dep(dep_id)["devices"]}


def test_engine_waves_pause_resume(settings: Settings, onnx_model: bytes) -> None:
    client = TestClient(create_app(settings))
    ids = [f"w-{i}" for i in range(5)]
    _rest_setup(client, onnx_model, ids)
    body = {"model": "m", "version": 1, "target": {"device_ids": ids}, "waves": [20, 60, 100]}
    r = client.post(f"{API}/deployments", json=body)
    assert r.status_code == 201, r.text
    dep_id = r.json()["id"]
    rollout = r.json()["rollout"]
    assert rollout["status"] == "in_progress" and rollout["current_wave"] == -1
    assert [w["devices"] for w in rollout["waves"]] == [["w-0"], ["w-1", "w-2"], ["w-3", "w-4"]]
    assert set(r.json()["counts"]) == {"queued"}
    e = Engine(client)

    e.step()
    assert e.published == ["w-0"]
    assert e.states(dep_id) == {"w-0": "pending", "w-1": "queued", "w-2": "queued", "w-3": "queued", "w-4": "queued"}
    e.step()
    assert e.published == ["w-0"]  # waits for the wave
    e.set_state(dep_id, "w-0", "active")
    e.step()
    assert e.published == ["w-0", "w-1", "w-2"]
    assert e.dep(dep_id)["rollout"]["current_wave"] == 1
    e.set_state(dep_id, "w-1", "active")
    e.set_state(dep_id, "w-2", "failed", "self_test_failed")
    result = e.step()
    assert result.halts == ["failure"]
    dep = e.dep(dep_id)
    assert dep["state"] == "paused" and dep["rollout"]["status"] == "paused"
    reason = dep["rollout"]["halt_reason"]
    assert "wave 2/3" in reason and "w-2 failed (self_test_failed)" in reason and "33.3% > 0%" in reason, reason
    assert dep["rollout"]["readings"]["failure_pct"] == pytest.approx(33.333)
    e.step()
    assert e.published == ["w-0", "w-1", "w-2"]  # paused: nothing moves
    assert e.states(dep_id)["w-3"] == "queued"

    r = client.post(f"{API}/deployments/{dep_id}/resume")
    assert r.status_code == 200 and r.json()["rollout"]["status"] == "in_progress"
    assert r.json()["rollout"]["acknowledged"] == ["w-0", "w-1", "w-2"]
    e.step()
    assert e.published == ["w-0", "w-1", "w-2", "w-3", "w-4"]
    e.set_state(dep_id, "w-3", "active")
    e.set_state(dep_id, "w-4", "active")
    e.step()
    dep = e.dep(dep_id)
    assert dep["rollout"]["status"] == "completed" and dep["state"] == "partial"
    assert client.post(f"{API}/deployments/{dep_id}/resume").status_code == 409
    assert client.post(f"{API}/deployments/{dep_id}/abort").status_code == 409


def test_engine_failure_threshold_soak_and_rate(settings: Settings, onnx_model: bytes) -> None:
    client = TestClient(create_app(settings))
    ids = [f"r-{i}" for i in range(6)]
    _rest_setup(client, onnx_model, ids)
    body = {
        "model": "m",
        "version": 1,
        "target": {"device_ids": ids},
        "waves": [50, 100],
        "rate_per_minute": 2,
        "gates": {"max_failure_pct": 40, "min_soak_s": 30},
    }
    dep_id = client.post(f"{API}/deployments", json=body).json()["id"]
    e = Engine(client)
    t0 = time.time()
    e.step(now=t0)
    assert e.published == ["r-0", "r-1"]  # 2 a minute
    e.step(now=t0 + 1)
    assert e.published == ["r-0", "r-1"]
    e.step(now=t0 + 61)
    assert e.published == ["r-0", "r-1", "r-2"]
    for d in ("r-0", "r-1"):
        e.set_state(dep_id, d, "active")
    e.set_state(dep_id, "r-2", "rolled_back", "latency_budget")
    e.step(now=time.time() + 1)  # 1/3 failed = 33 % <= 40 %, but not soaked 30 s yet
    assert e.dep(dep_id)["rollout"]["current_wave"] == 0
    e.step(now=time.time() + 31)
    dep = e.dep(dep_id)
    assert dep["rollout"]["status"] == "in_progress" and dep["rollout"]["current_wave"] == 1
    assert dep["rollout"]["readings"]["failed"] == 1 and dep["rollout"]["readings"]["started"] == 3


def test_engine_abort_marks_queued_and_devices_without_previous_model(settings: Settings, onnx_model: bytes) -> None:
    client = TestClient(create_app(settings))
    ids = ["a-0", "a-1", "a-2"]
    _rest_setup(client, onnx_model, ids)
    body = {"model": "m", "version": 2, "target": {"device_ids": ids}, "waves": [34, 100]}
    dep_id = client.post(f"{API}/deployments", json=body).json()["id"]
    e = Engine(client)
    e.step()
    e.set_state(dep_id, "a-0", "active")
    r = client.post(f"{API}/deployments/{dep_id}/abort")
    assert r.status_code == 200, r.text
    dep = r.json()
    assert dep["state"] == "aborted" and dep["rollout"]["halt_reason"] == "aborted by operator"
    assert dep["rollout"]["rollbacks"] == {"a-0": "no previous model known: left as is"}
    assert {d["device_id"]: d["state"] for d in dep["devices"]} == {
        "a-0": "active",
        "a-1": "superseded",
        "a-2": "superseded",
    }
    e.step()
    assert e.published == ["a-0"]
    metrics = client.get("/metrics").text
    assert 'edgefleet_controller_rollout_halts_total{reason="manual"} 1.0' in metrics
    assert 'edgefleet_controller_rollouts{status="aborted"} 1.0' in metrics


def test_engine_step_racing_an_operator_abort_publishes_nothing(
    settings: Settings, onnx_model: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(create_app(settings))
    ids = ["c-0", "c-1"]
    _rest_setup(client, onnx_model, ids)
    body = {"model": "m", "version": 1, "target": {"device_ids": ids}, "waves": [50, 100]}
    dep_id = client.post(f"{API}/deployments", json=body).json()["id"]
    e = Engine(client)
    real = svc._rows
    fired: list[bool] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        rows = real(*args, **kwargs)  # the step has read the rollout; the operator commits first
        if not fired:
            fired.append(True)
            assert client.post(f"{API}/deployments/{dep_id}/abort").status_code == 200
        return rows

    monkeypatch.setattr(svc, "_rows", racing)
    assert e.step().payloads == []
    dep = e.dep(dep_id)
    assert dep["rollout"]["status"] == "aborted" and dep["rollout"]["current_wave"] == -1
    assert set(states(dep).values()) == {"superseded"}


def _telemetry(app: Any, device_id: str, version: int, p95: float, at: float) -> None:
    with app.state.sessions() as session:
        session.add(
            TelemetryRow(
                device_id=device_id,
                seq=1,
                ts=at,
                received_at=at,
                interval_s=1.0,
                count=10,
                errors=0,
                p95_ms=p95,
                model_name="m",
                model_version=version,
            )
        )
        session.commit()


def _set_active_model(app: Any, device_id: str, version: int, sha256: str) -> None:
    with app.state.sessions() as session:
        device = session.get(Device, device_id)
        assert device is not None
        device.state = {"active_model": {"name": "m", "version": version, "sha256": sha256}}
        session.commit()


def test_engine_p95_budget_and_regression_gates(settings: Settings, onnx_model: bytes) -> None:
    client = TestClient(create_app(settings))
    ids = ["g-0", "g-1", "g-2"]
    _rest_setup(client, onnx_model, ids)
    sha = client.get(f"{API}/models/m/versions/1").json()["sha256"]
    for d in ids:
        _set_active_model(client.app, d, 1, sha)
    t0 = time.time()
    for d in ids:  # v1 ran at about 1 ms before the rollout
        _telemetry(client.app, d, 1, 1.0, t0 - 10)
    body = {
        "model": "m",
        "version": 2,
        "target": {"device_ids": ids},
        "waves": [34, 67, 100],
        "gates": {"max_p95_ms": 3.0, "max_p95_regression": 1.5},
    }
    dep_id = client.post(f"{API}/deployments", json=body).json()["id"]
    e = Engine(client)
    e.step()
    e.set_state(dep_id, "g-0", "active")
    _telemetry(client.app, "g-0", 2, 1.2, time.time() + 1)  # 1.2x: fine
    _telemetry(client.app, "g-0", 1, 50.0, time.time() + 1)  # old model's rows after the switch do not count
    e.step()
    dep = e.dep(dep_id)
    assert dep["rollout"]["current_wave"] == 1, dep["rollout"]
    assert dep["rollout"]["readings"]["p95_ms"] == {"g-0": 1.2}
    assert dep["rollout"]["readings"]["p95_regression"] == {"g-0": pytest.approx(1.2)}
    e.set_state(dep_id, "g-1", "active")
    _telemetry(client.app, "g-1", 2, 2.0, time.time() + 1)  # 2x the previous model, under 3 ms
    assert e.step().halts == ["p95_regression"]
    reason = e.dep(dep_id)["rollout"]["halt_reason"]
    assert "g-1 p95 2 ms is 2.00x v1's 1 ms > 1.5x" in reason, reason
    assert client.post(f"{API}/deployments/{dep_id}/resume").status_code == 200
    e.step()
    e.set_state(dep_id, "g-2", "active")
    _telemetry(client.app, "g-2", 2, 9.0, time.time() + 1)
    assert e.step().halts == ["p95"]
    dep = e.dep(dep_id)
    assert dep["state"] == "paused" and "g-2 p95 9 ms > 3 ms" in dep["rollout"]["halt_reason"]
    assert set(dep["rollout"]["readings"]["p95_ms"]) == {"g-2"}  # g-0, g-1 were acknowledged


def test_scheduler_lease_one_holder(tmp_path: Path) -> None:
    """Two controllers on one SQLite file: only the lease holder advances rollouts."""
    s = Settings(data_dir=tmp_path / "shared", mqtt_enabled=False, rollout_lease_s=0.4)
    app1, app2 = create_app(s), create_app(s.model_copy(update={"controller_id": "second"}))
    first: RolloutScheduler = app1.state.rollouts
    second: RolloutScheduler = app2.state.rollouts
    assert first.tick() is True
    assert second.tick() is False
    assert first.tick() is True
    with app1.state.sessions() as session:
        holder = lease_holder(session=session)
        assert holder is not None and holder[0] == first.holder
        assert not acquire_lease(session=session, holder="third", ttl_s=5)
    time.sleep(0.5)  # the first one stopped renewing (as if it hung or crashed): its lease expires
    assert second.tick() is True
    assert first.tick() is False and not first.has_lease
    second.stop()  # releases at once
    assert first.tick() is True


# -- real agents over a real broker -----------------------------------------------------------


@contextmanager
def agents(
    ctl: RunningController, broker: MosquittoProcess, tmp: Path, ids: list[str], **overrides: Any
) -> Iterator[dict[str, Any]]:
    from agent.app import Agent
    from agent.config import AgentSettings

    pem = httpx.get(ctl.url + f"{API}/keys/public").json()["public_key_pem"]
    started: dict[str, Any] = {}
    try:
        for d in ids:
            kw: dict[str, Any] = {
                "telemetry_interval_s": 0.3,
                "watch_seconds": 0.3,
                "p95_latency_ms": 1000.0,
                **overrides.get(d, {}),
            }
            a = Agent(
                AgentSettings(
                    device_id=d,
                    profile="car-ecu",
                    broker_host=broker.host,
                    broker_port=broker.port,
                    topic_root=ctl.settings.topic_root,
                    data_dir=tmp / d,
                    controller_public_key=pem,
                    **kw,
                ),
                hardware=None,
            )
            a.start()
            started[d] = a
        yield started
    finally:
        for a in started.values():
            a.stop()


def register(url: str, ids: list[str]) -> None:
    for d in ids:
        assert httpx.post(url + f"{API}/devices", json={"device_id": d, "profile": "car-ecu"}).status_code == 201


def upload(url: str, seed: int) -> dict[str, Any]:
    files = {"file": ("m.onnx", make_onnx(n_in=8, n_out=4, seed=seed)), "samples": ("s.npz", make_samples())}
    r = httpx.post(url + f"{API}/models", files=files, data={"name": "ro"})
    assert r.status_code == 201, r.text
    meta: dict[str, Any] = r.json()
    return meta


def dep_of(url: str, dep_id: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(url + f"{API}/deployments/{dep_id}").json()
    return data


def states(dep: dict[str, Any]) -> dict[str, str]:
    return {d["device_id"]: d["state"] for d in dep["devices"]}


def online(url: str, ids: list[str]) -> None:
    wait_until(lambda: all(httpx.get(url + f"{API}/devices/{d}").json()["online"] for d in ids), 15, what="births")


def desired_of(got: list[tuple[str, bytes, bool]]) -> list[tuple[str, DesiredState]]:
    out = []
    for topic, payload, _retained in got:
        if payload and topic.endswith("/desired"):
            out.append((topic.split("/")[-2], codec.decode(payload, DesiredState)))
    return out


def test_waves_start_one_device_then_the_rest(
    controller: RunningController, live_broker: MosquittoProcess, probe: Probe, tmp_path: Path
) -> None:
    url, ids = controller.url, ["ro-a", "ro-b", "ro-c"]
    topics = Topics(controller.settings.topic_root)
    probe.subscribe(f"{topics.root}/devices/+/desired")
    register(url, ids)
    upload(url, seed=1)
    with agents(controller, live_broker, tmp_path, ids):
        online(url, ids)
        gates = {"min_soak_s": 1.0}
        body = {"model": "ro", "version": 1, "target": {"device_ids": ids}, "waves": [34, 100], "gates": gates}
        r = httpx.post(url + f"{API}/deployments", json=body)
        assert r.status_code == 201, r.text
        dep_id = r.json()["id"]
        first = wait_until(lambda: states(dep_of(url, dep_id))["ro-a"] == "active" and dep_of(url, dep_id), 15, 0.05)
        assert states(first)["ro-b"] == "queued" and states(first)["ro-c"] == "queued"  # soaking
        done = wait_until(lambda: (d := dep_of(url, dep_id))["rollout"]["status"] == "completed" and d, 20)
        assert done["state"] == "completed" and set(states(done).values()) == {"active"}
        got = desired_of(probe.collect(1.0))
        order = [d for d, m in got if m.deployment_id == dep_id]
        assert order[0] == "ro-a" and sorted(order[1:3]) == ["ro-b", "ro-c"], order
        started = {w["index"]: w["started"] for w in done["rollout"]["waves"]}
        assert started == {0: 1, 1: 2}


def test_failing_wave_pauses_and_resume_continues(
    controller: RunningController, live_broker: MosquittoProcess, probe: Probe, tmp_path: Path
) -> None:
    url, ids = controller.url, ["rf-a", "rf-b", "rf-c"]
    topics = Topics(controller.settings.topic_root)
    probe.subscribe(f"{topics.root}/devices/+/desired")
    register(url, ids)
    upload(url, seed=2)
    # rf-a refuses every artifact: its own budget is 64 bytes.
    with agents(controller, live_broker, tmp_path, ids, **{"rf-a": {"max_artifact_bytes": 64}}):
        online(url, ids)
        body = {"model": "ro", "version": 1, "target": {"device_ids": ids}, "waves": [34, 100]}
        dep_id = httpx.post(url + f"{API}/deployments", json=body).json()["id"]
        paused = wait_until(lambda: (d := dep_of(url, dep_id))["rollout"]["status"] == "paused" and d, 15)
        assert paused["state"] == "paused"
        reason = paused["rollout"]["halt_reason"]
        assert "wave 1/2" in reason and "rf-a rejected" in reason and "over_budget" in reason, reason
        time.sleep(1.0)  # nothing else moves while paused
        assert states(dep_of(url, dep_id)) == {"rf-a": "rejected", "rf-b": "queued", "rf-c": "queued"}
        got = desired_of(probe.collect(0.5))
        assert [d for d, _ in got] == ["rf-a"]
        metrics = httpx.get(url + "/metrics").text
        assert 'edgefleet_controller_rollout_halts_total{reason="failure"} 1.0' in metrics

        r = httpx.post(url + f"{API}/deployments/{dep_id}/resume")
        assert r.status_code == 200, r.text
        done = wait_until(lambda: (d := dep_of(url, dep_id))["rollout"]["status"] == "completed" and d, 20)
        assert states(done) == {"rf-a": "rejected", "rf-b": "active", "rf-c": "active"}
        assert done["state"] == "partial"


def _predict_loop(agents_: dict[str, Any], stop: threading.Event) -> None:
    x = np.zeros((1, 8), dtype=np.float32)
    while not stop.is_set():
        for a in agents_.values():
            with contextlib.suppress(Exception):  # no model active yet
                a.predict(x)
        time.sleep(0.01)


def test_p95_gate_breach_aborts_and_rolls_back_to_previous_model(
    controller: RunningController, live_broker: MosquittoProcess, tmp_path: Path
) -> None:
    url, ids = controller.url, ["rp-a", "rp-b"]
    register(url, ids)
    v1, v2 = upload(url, seed=3), upload(url, seed=4)
    stop = threading.Event()
    with agents(controller, live_broker, tmp_path, ids) as running:
        online(url, ids)
        base = httpx.post(url + f"{API}/deployments", json={"model": "ro", "version": 1, "target": {"device_ids": ids}})
        assert base.status_code == 201 and base.json()["rollout"] is None
        wait_until(lambda: dep_of(url, base.json()["id"])["state"] == "completed", 15, what="v1 everywhere")
        loop = threading.Thread(target=_predict_loop, args=(running, stop), daemon=True)
        loop.start()
        try:
            body = {
                "model": "ro",
                "version": 2,
                "target": {"device_ids": ids},
                "waves": [50, 100],
                "gates": {"max_p95_ms": 0.000001, "min_soak_s": 1.0},
                "on_breach": "abort",
            }
            dep_id = httpx.post(url + f"{API}/deployments", json=body).json()["id"]
            aborted = wait_until(lambda: (d := dep_of(url, dep_id))["rollout"]["status"] == "aborted" and d, 20)
            rollout = aborted["rollout"]
            assert "rp-a p95" in rollout["halt_reason"] and "> 1e-06 ms" in rollout["halt_reason"], rollout
            assert rollout["readings"]["p95_ms"]["rp-a"] > 0
            assert rollout["rollbacks"]["rp-a"].startswith("ro v1 via deployment ")
            assert states(aborted) == {"rp-a": "rolled_back", "rp-b": "superseded"}
            back_id = rollout["rollbacks"]["rp-a"].rsplit(" ", 1)[1]
            wait_until(lambda: states(dep_of(url, back_id)) == {"rp-a": "active"}, 20, what="rollback active")
            wait_until(
                lambda: running["rp-a"].status()["active_model"]["sha256"] == v1["sha256"], 10, what="v1 back on rp-a"
            )
            assert running["rp-b"].status()["active_model"]["sha256"] == v1["sha256"]
            assert v2["sha256"] != v1["sha256"]
            metrics = httpx.get(url + "/metrics").text
            assert 'edgefleet_controller_rollout_halts_total{reason="p95"} 1.0' in metrics
        finally:
            stop.set()
            loop.join(5)


def test_controller_restart_mid_rollout_resumes(
    mqtt_settings: Settings, live_broker: MosquittoProcess, tmp_path: Path
) -> None:
    ids = ["rr-a", "rr-b", "rr-c"]
    with run_controller(mqtt_settings) as ctl:
        url = ctl.url
        register(url, ids)
        upload(url, seed=5)
        with agents(ctl, live_broker, tmp_path, ids):
            online(url, ids)
            body = {
                "model": "ro",
                "version": 1,
                "target": {"device_ids": ids},
                "waves": [34, 100],
                "gates": {"min_soak_s": 3.0},
            }
            dep_id = httpx.post(url + f"{API}/deployments", json=body).json()["id"]
            wait_until(lambda: states(dep_of(url, dep_id))["rr-a"] == "active", 15, what="wave 1 active")
            ctl.stop()
            with ctl.app.state.sessions() as session:
                r = session.get(Rollout, dep_id)
                assert r is not None and r.status == "in_progress" and r.current_wave == 0
                queued = session.scalars(
                    select(DeploymentDevice.device_id).where(
                        DeploymentDevice.deployment_id == dep_id, DeploymentDevice.state == "queued"
                    )
                ).all()
                assert sorted(queued) == ["rr-b", "rr-c"]
            with run_controller(mqtt_settings) as again:
                done = wait_until(
                    lambda: (d := dep_of(again.url, dep_id))["rollout"]["status"] == "completed" and d, 20
                )
                assert done["state"] == "completed" and set(states(done).values()) == {"active"}


def test_second_controller_takes_over_rollouts(
    mqtt_settings: Settings, live_broker: MosquittoProcess, tmp_path: Path
) -> None:
    """Two controllers on one SQLite file: one advances rollouts; when it stops, the other goes on."""
    s1 = mqtt_settings.model_copy(update={"rollout_lease_s": 1.0})
    s2 = s1.model_copy(update={"controller_id": s1.controller_id + "-b"})
    ids = ["rl-a", "rl-b"]
    with run_controller(s1) as c1, run_controller(s2) as c2:
        scheds = {c1.url: c1.app.state.rollouts, c2.url: c2.app.state.rollouts}
        wait_until(lambda: sum(s.has_lease for s in scheds.values()) == 1, 5, what="one lease holder")
        leader, follower = (c1, c2) if scheds[c1.url].has_lease else (c2, c1)
        url = follower.url
        register(url, ids)
        upload(url, seed=6)
        with agents(follower, live_broker, tmp_path, ids):
            online(url, ids)
            body = {
                "model": "ro",
                "version": 1,
                "target": {"device_ids": ids},
                "waves": [50, 100],
                "gates": {"min_soak_s": 2.0},
            }
            dep_id = httpx.post(url + f"{API}/deployments", json=body).json()["id"]
            wait_until(lambda: states(dep_of(url, dep_id))["rl-a"] == "active", 15, what="wave 1 active")
            assert not scheds[url].has_lease
            leader.stop()
            done = wait_until(lambda: (d := dep_of(url, dep_id))["rollout"]["status"] == "completed" and d, 20)
            assert set(states(done).values()) == {"active"}
            assert scheds[url].has_lease
