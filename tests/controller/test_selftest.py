"""Self-test vectors computed by the controller must pass the agent's own self-test on the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.modelfiles import ModelFileError, guess_runtime, self_test_vectors
from shared.messages import SelfTestVector

from .conftest import EXAMPLES, make_onnx


def _agent_check(tmp_path: Path, data: bytes, runtime: str, vectors: list[SelfTestVector]) -> None:
    runtimes = pytest.importorskip("agent.runtimes")
    selftest = pytest.importorskip("agent.selftest")
    path = tmp_path / ("m.tflite" if runtime == "litert" else "m.onnx")
    path.write_bytes(data)
    selftest.run_self_test(runtimes.load_model(path, runtime), vectors)


def test_onnx_vectors_pass_agent_selftest(tmp_path: Path) -> None:
    data = make_onnx(hidden=16, seed=7)
    samples = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    vectors = self_test_vectors(data, "onnxruntime", samples, count=4)
    assert len(vectors) == 4 and vectors[0].input_shape == [1, 8] and vectors[0].input_dtype == "float32"
    assert vectors[0].data == pytest.approx(samples[0].tolist())
    _agent_check(tmp_path, data, "onnxruntime", vectors)
    corrupted = [v.model_copy(update={"expected_top1": (v.expected_top1 or 0) + 1}) for v in vectors]
    with pytest.raises(Exception, match="top-1"):
        _agent_check(tmp_path, data, "onnxruntime", corrupted)


def test_tflite_vectors_pass_agent_selftest(tmp_path: Path, tflite_model: bytes) -> None:
    samples = None
    if (EXAMPLES / "digits_samples.npz").is_file():
        samples = np.load(EXAMPLES / "digits_samples.npz")["x"]
    vectors = self_test_vectors(tflite_model, "litert", samples, count=4)
    assert len(vectors) == 4
    _agent_check(tmp_path, tflite_model, "litert", vectors)
    random_vectors = self_test_vectors(tflite_model, "litert", None, count=2)
    _agent_check(tmp_path, tflite_model, "litert", random_vectors)


def test_guess_runtime_and_errors(tflite_model: bytes, onnx_model: bytes) -> None:
    assert guess_runtime(tflite_model) == "litert"
    assert guess_runtime(onnx_model) == "onnxruntime"
    assert guess_runtime(b"whatever", "x.onnx") == "onnxruntime"
    with pytest.raises(ModelFileError):
        guess_runtime(b"PK\x03\x04zip", "model.zip")
    with pytest.raises(ModelFileError, match="ONNX"):
        self_test_vectors(b"\x08\x01junk", "onnxruntime")


def test_large_inputs_keep_manifest_small() -> None:
    data = make_onnx(n_in=3000, n_out=10, seed=1)
    vectors = self_test_vectors(data, "onnxruntime", None, count=8)
    assert 1 <= len(vectors) < 8
    assert sum(len(v.data) + len(v.expected or []) for v in vectors) <= 12_000
