"""The ``compact`` step is lossless: bit-identical outputs, a valid model, the same I/O names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from controller.compression import compact as compact_mod
from controller.compression.compact import compact_file
from controller.compression.data import fit_shape
from controller.compression.evaluate import Runner
from controller.compression.passes import ModelState, get_pass
from controller.compression.search import Candidate, compress
from shared.profiles import BUILTIN_PROFILES
from tests.compression.helpers import make_ctx


def _all_outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in sess.run(None, {sess.get_inputs()[0].name: x})]


def _io(path: Path) -> tuple[list[str], list[str]]:
    g = onnx.load(str(path)).graph
    return [i.name for i in g.input], [o.name for o in g.output]


@pytest.mark.parametrize(
    ("model", "pass_name"),
    [
        ("cnn", "quantize_static_int8"),
        ("cnn", "quantize_dynamic_int8"),
        ("mlp", "quantize_static_int8"),
        ("mlp", None),
        ("encoder", "quantize_dynamic_int8"),
    ],
)
def test_compaction_is_bit_identical_and_valid(  # type: ignore[no-untyped-def]
    tmp_path: Path, digits, mlp_onnx, cnn_onnx, encoder_onnx, model, pass_name
) -> None:
    if model == "encoder":
        src, shape = encoder_onnx[0], (6, 32)
        splits_x = np.load(encoder_onnx[1])["x"]
        from controller.compression.data import Dataset, split

        splits = split(Dataset("encoder", splits_x, None))
    else:
        src, shape = (cnn_onnx, (1, 8, 8)) if model == "cnn" else (mlp_onnx, (64,))
        splits = digits
    if pass_name is not None:
        src = get_pass(pass_name)()(ModelState(onnx_path=src), make_ctx(tmp_path, splits, shape)).onnx_path
    out = tmp_path / "compact.onnx"
    info = compact_file(src, out)

    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert out.stat().st_size < src.stat().st_size
    assert info["bytes_before"] == src.stat().st_size and info["bytes_after"] == out.stat().st_size
    assert _io(out) == _io(src)  # callers feed and read the same names
    x = fit_shape(splits.eval.x, shape).astype(np.float32)  # every held-out row
    before, after = _all_outputs(src, x), _all_outputs(out, x)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()  # bit for bit, not approximately

    m = onnx.load(str(out))
    assert not m.graph.value_info and not m.metadata_props and not m.producer_name and not m.doc_string
    assert all(not n.doc_string and len(n.name) <= 3 for n in m.graph.node)
    io = {n for pair in _io(out) for n in pair}
    assert all(len(t) <= 3 for n in m.graph.node for t in [*n.input, *n.output] if t not in io)
    scalars = [
        (i.data_type, tuple(i.dims), numpy_helper.to_array(i).tobytes())
        for i in m.graph.initializer
        if int(np.prod(i.dims)) == 1
    ]
    assert len(scalars) == len(set(scalars))  # identical scalar initializers (dtype, shape, bytes) merged


def test_compaction_keeps_weights_byte_for_byte(tmp_path: Path, digits, cnn_onnx) -> None:  # type: ignore[no-untyped-def]
    src = get_pass("quantize_static_int8")()(ModelState(onnx_path=cnn_onnx), make_ctx(tmp_path, digits, (1, 8, 8)))
    out = tmp_path / "c.onnx"
    compact_file(src.onnx_path, out)

    def payload(p: Path) -> list[bytes]:
        return sorted(numpy_helper.to_array(i).tobytes() for i in onnx.load(str(p)).graph.initializer)

    assert set(payload(out)) == set(payload(src.onnx_path))
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == [
        n.op_type for n in onnx.load(str(src.onnx_path)).graph.node
    ]


def test_compact_pass_keeps_the_original_when_outputs_differ(  # type: ignore[no-untyped-def]
    tmp_path: Path, digits, mlp_onnx, monkeypatch
) -> None:
    real = compact_mod.compact_model

    def lossy(model):  # type: ignore[no-untyped-def]
        done = real(model)
        w = max(model.graph.initializer, key=lambda i: int(np.prod(i.dims)))
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.01, w.name))
        return done

    monkeypatch.setattr(compact_mod, "compact_model", lossy)
    state = ModelState(onnx_path=mlp_onnx)
    out = get_pass("compact")()(state, make_ctx(tmp_path, digits, (64,)))
    assert out.onnx_path == mlp_onnx
    assert out.info["compact"]["verified_bit_identical"] is False


def test_search_compacts_every_onnx_candidate_and_compares_with_the_upload(  # type: ignore[no-untyped-def]
    tmp_path: Path, mlp_onnx
) -> None:
    cands = [Candidate("fp32", []), Candidate("int8-static", [("quantize_static_int8", {})])]
    result = compress(mlp_onnx, BUILTIN_PROFILES["car-ecu"], "digits", workdir=tmp_path, candidates=cands,
                      latency_budget_s=0.1)  # fmt: skip
    assert result.baseline.size_bytes == mlp_onnx.stat().st_size  # ratios are against the uploaded file
    for c in result.candidates:
        assert c.error is None, c.error
        assert c.steps[-1]["pass"] == "compact"
        assert c.info["compact"]["verified_bit_identical"] is True
        assert c.metrics.size_bytes == c.info["compact"]["bytes_after"] < c.info["compact"]["bytes_before"]
    fp32 = next(c for c in result.candidates if c.name == "fp32")
    assert fp32.accuracy_drop_pt == 0.0
    x = _digits_rows()
    assert np.array_equal(Runner(fp32.artifact, "onnxruntime").predict(x), Runner(mlp_onnx, "onnxruntime").predict(x))


def _digits_rows() -> np.ndarray:
    from controller.compression.data import load_data

    return load_data("digits").x[:64].astype(np.float32)
