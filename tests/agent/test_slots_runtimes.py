"""A/B slots with an atomic pointer, and the two runtimes behind Model.run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agent.runtimes import LiteRTModel, OnnxModel, load_model, map_runtime_error
from agent.selftest import run_self_test
from agent.slots import Slots
from shared.errors import ModelLoadError, SelfTestError
from shared.messages import ModelRef, SelfTestVector
from tests.agent import models


def ref(data: bytes, version: int) -> ModelRef:
    return ModelRef(name="m", version=version, sha256=hashlib.sha256(data).hexdigest())


def test_slots_stage_activate_rollback(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    assert slots.active() is None and slots.previous() is None
    a = slots.stage(model=ref(b"one", 1), runtime="onnxruntime", deployment_id="d1", data=b"one")
    assert slots.active() is None  # staging never changes what serves
    slots.activate(a.slot)
    b = slots.stage(model=ref(b"two", 2), runtime="litert", deployment_id="d2", data=b"two")
    assert b.slot != a.slot and b.path.suffix == ".tflite"
    slots.activate(b.slot)
    assert slots.active() == b and slots.previous() == a
    assert json.loads((tmp_path / "active.json").read_text()) == {"active": b.slot, "previous": a.slot}
    assert slots.rollback() == a
    assert slots.active() == a and slots.previous() == b
    # Staging over the previous slot forgets it first: no rollback to half-written files.
    c = slots.stage(model=ref(b"three", 3), runtime="onnxruntime", deployment_id="d3", data=b"three")
    assert c.slot == b.slot and slots.previous() is None
    assert not list(tmp_path.glob("**/*.tmp"))


def test_slots_without_previous_cannot_roll_back(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    with pytest.raises(LookupError):
        slots.rollback()
    (tmp_path / "active.json").write_text("{garbage")
    assert slots.active() is None


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rt") / "m.onnx"
    path.write_bytes(models.onnx_mlp(1))
    return path


def test_onnx_model_matches_bare_session(onnx_file: Path) -> None:
    model = load_model(onnx_file, "onnxruntime")
    assert isinstance(model, OnnxModel) and model.input_shape == (None, models.N_IN)
    x = np.random.default_rng(0).random((3, models.N_IN), dtype=np.float32)
    bare = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(model.run(x), bare.run(None, {"x": x})[0], rtol=1e-6)
    np.testing.assert_allclose(model.run(x.astype(np.float64)), model.run(x))  # dtype handled


def test_litert_full_integer_model_quantizes_io(tmp_path: Path) -> None:
    data, x = models.tflite_int8(tmp_path)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    model = load_model(path, "litert")
    assert isinstance(model, LiteRTModel) and model.input_dtype.kind in "iu"
    y = model.run(x[:1])
    assert y.dtype == np.float32 and y.shape[0] == 1
    assert model.run(x[1:2]).shape == y.shape
    batch = model.run(x[:4])  # resized once for the new batch size
    np.testing.assert_allclose(batch[:1], y, atol=1e-5)


def test_load_and_run_errors_become_model_load_error(tmp_path: Path, onnx_file: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        load_model(bad, "onnxruntime")
    bad_tfl = tmp_path / "bad.tflite"
    bad_tfl.write_bytes(b"not a model either")
    with pytest.raises(ModelLoadError):
        load_model(bad_tfl, "litert")
    model = load_model(onnx_file, "onnxruntime")
    try:
        model.run(np.zeros((1, 3), np.float32))
    except Exception as exc:
        assert isinstance(map_runtime_error(exc), ModelLoadError)
    else:
        pytest.fail("wrong input shape should fail")


def test_self_test(onnx_file: Path) -> None:
    model = load_model(onnx_file, "onnxruntime")
    x = np.ones((1, models.N_IN), np.float32)
    y = model.run(x).ravel()
    good = SelfTestVector(
        input_shape=[1, models.N_IN], data=x.ravel().tolist(), expected=y.tolist(), expected_top1=int(np.argmax(y))
    )
    run_self_test(model, [good])
    for bad in (
        good.model_copy(update={"expected": (y + 1).tolist()}),
        good.model_copy(update={"expected_top1": (int(np.argmax(y)) + 1) % len(y)}),
        good.model_copy(update={"expected": y[:2].tolist()}),
        good.model_copy(update={"input_shape": [3, 5]}),
    ):
        with pytest.raises(SelfTestError):
            run_self_test(model, [bad])
    with pytest.raises(ModelLoadError):
        run_self_test(model, [good.model_copy(update={"input_shape": [2, 4], "data": [0.0] * 8})])
