"""The committed example models load and score what the manifest says they score."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from simulators.examples import examples_dir, load_dataset, manifest, model_path

TOLERANCE = 0.01  # one percentage point


def test_manifest_lists_existing_files_with_matching_sha256() -> None:
    m = manifest()
    entries = list(m["models"].values()) + list(m["data"].values())
    assert {"digits_mlp.onnx", "digits_mlp_v2.onnx", "digits_mlp_int8.tflite"} <= set(m["models"])
    for entry in entries:
        path = examples_dir() / entry["file"]
        assert path.stat().st_size == entry["size"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert entry["size"] < 256 * 1024, "example files must stay tiny"


def test_dataset_is_scaled_and_labelled() -> None:
    x, y = load_dataset("digits")
    assert y is not None
    assert x.dtype == np.float32 and x.shape[1] == 64 and len(x) == len(y)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    samples, none = load_dataset("digits_samples")
    assert none is None and samples.shape[1] == 64 and len(samples) >= 1


def test_unknown_dataset_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown data set"):
        load_dataset("cifar")


@pytest.mark.parametrize("name", ["digits_mlp.onnx", "digits_mlp_v2.onnx"])
def test_onnx_model_accuracy_matches_manifest(name: str) -> None:
    import onnxruntime as ort

    x, y = load_dataset("digits")
    sess = ort.InferenceSession(str(model_path(name)), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert isinstance(sess.get_inputs()[0].shape[0], str), "batch axis must be dynamic"
    logits = sess.run(["logits"], {"input": x})[0]
    acc = float((logits.argmax(axis=1) == y).mean())
    assert acc == pytest.approx(manifest()["models"][name]["accuracy"], abs=TOLERANCE)
    assert acc > 0.9
    # Dynamic batch: a single row works too.
    assert sess.run(["logits"], {"input": x[:1]})[0].shape == (1, 10)


def test_tflite_int8_model_accuracy_matches_manifest() -> None:
    pytest.importorskip("ai_edge_litert")
    from simulators.examples.build import tflite_predict

    x, y = load_dataset("digits")
    entry = manifest()["models"]["digits_mlp_int8.tflite"]
    assert entry["input"]["dtype"] == "int8" and entry["output"]["dtype"] == "int8"
    acc = float((tflite_predict(model_path("digits_mlp_int8.tflite"), x).argmax(axis=1) == y).mean())
    assert acc == pytest.approx(entry["accuracy"], abs=TOLERANCE)
    assert acc > 0.9


def test_tflite_input_is_int8_and_single_row_runs() -> None:
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path("digits_mlp_int8.tflite")))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert list(inp["shape"]) == [1, 64]
    interp.set_tensor(inp["index"], np.zeros((1, 64), np.int8))
    interp.invoke()
    assert interp.get_tensor(out["index"]).shape == (1, 10)


@pytest.mark.slow
def test_rebuild_reproduces_accuracy(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from simulators.examples.build import build_examples

    rebuilt = build_examples(tmp_path, seed=0)
    committed = manifest()
    for name, entry in committed["models"].items():
        assert (tmp_path / name).is_file()
        assert rebuilt["models"][name]["accuracy"] == pytest.approx(entry["accuracy"], abs=0.02)
    # Same split: the test data is identical.
    with np.load(tmp_path / "digits_test.npz") as new, np.load(examples_dir() / "digits_test.npz") as old:
        np.testing.assert_array_equal(new["x"], old["x"])
        np.testing.assert_array_equal(new["y"], old["y"])
