"""One test per pass, on small real models with real onnxruntime / LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from controller.compression import torch_utils as tu
from controller.compression.evaluate import transfer_size
from controller.compression.passes import REGISTRY, ModelState, get_pass
from tests.compression.helpers import accuracy, make_ctx


def _run(name: str, cfg: dict, state: ModelState, ctx) -> ModelState:  # type: ignore[no-untyped-def]
    return get_pass(name)(cfg)(state, ctx)


def test_registry_lists_every_pass_with_a_pydantic_config() -> None:
    assert set(REGISTRY) == {
        "weight_pruning", "structured_pruning", "quantize_dynamic_int8", "quantize_static_int8", "fp16",
        "mixed_precision", "tflite_int8", "distillation", "architecture_search", "compact",
    }  # fmt: skip
    for cls in REGISTRY.values():
        cls.Config()  # every config has defaults
    with pytest.raises(Exception):  # noqa: B017 - pydantic ValidationError; unknown fields are refused
        get_pass("weight_pruning")({"sparsity": 0.5, "typo": 1})


def test_dynamic_int8_is_smaller_and_keeps_accuracy(tmp_path: Path, digits, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run("quantize_dynamic_int8", {}, ModelState(onnx_path=mlp_onnx), make_ctx(tmp_path, digits, (64,)))
    assert out.precision == "int8"
    assert mlp_onnx.stat().st_size / out.onnx_path.stat().st_size >= 3.5
    assert accuracy(mlp_onnx, digits, (64,)) - accuracy(out.onnx_path, digits, (64,)) <= 1.0


def test_static_int8_is_per_channel_qdq(tmp_path: Path, digits, cnn_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run("quantize_static_int8", {}, ModelState(onnx_path=cnn_onnx), make_ctx(tmp_path, digits, (1, 8, 8)))
    model = onnx.load(str(out.onnx_path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    int8_weights = [a for a in inits.values() if a.dtype == np.int8 and a.ndim >= 2]
    assert int8_weights
    # per-channel: weight DequantizeLinear nodes carry one scale per output channel
    scales = [
        inits[n.input[1]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim >= 2
    ]
    assert scales and all(s.size > 1 for s in scales)
    assert accuracy(cnn_onnx, digits, (1, 8, 8)) - accuracy(out.onnx_path, digits, (1, 8, 8)) <= 1.0


def test_fp16_halves_storage_and_matches_outputs(tmp_path: Path, digits, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run("fp16", {}, ModelState(onnx_path=mlp_onnx), make_ctx(tmp_path, digits, (64,)))
    ratio = mlp_onnx.stat().st_size / out.onnx_path.stat().st_size
    assert 1.9 <= ratio <= 2.1
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(out.onnx_path)).graph.initializer)
    assert accuracy(out.onnx_path, digits, (64,)) == pytest.approx(accuracy(mlp_onnx, digits, (64,)), abs=0.3)


def test_weight_pruning_zeroes_weights_and_shrinks_the_wire(tmp_path: Path, digits, mlp, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(tmp_path, digits, (64,))
    out = _run(
        "weight_pruning",
        {"sparsity": 0.8, "steps": 2, "finetune_epochs": 4},
        ModelState(onnx_path=mlp_onnx, torch_model=mlp),
        ctx,
    )
    weights = [numpy_helper.to_array(i) for i in onnx.load(str(out.onnx_path)).graph.initializer]
    big = np.concatenate([w.ravel() for w in weights if w.ndim == 2])
    assert (big == 0).mean() == pytest.approx(0.8, abs=0.01)
    assert transfer_size(out.onnx_path) < 0.5 * transfer_size(mlp_onnx)
    assert accuracy(mlp_onnx, digits, (64,)) - accuracy(out.onnx_path, digits, (64,)) <= 2.0
    # the caller's model is untouched (passes clone)
    assert all((p != 0).float().mean() > 0.9 for p in mlp.parameters())


def test_connection_pruning_per_layer(tmp_path: Path, digits, mlp, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run(
        "weight_pruning",
        {"sparsity": 0.5, "scope": "layer", "steps": 1, "finetune_epochs": 1},
        ModelState(onnx_path=mlp_onnx, torch_model=mlp),
        make_ctx(tmp_path, digits, (64,)),
    )
    for layer in (m for m in out.torch_model.modules() if hasattr(m, "weight") and m.weight.ndim == 2):
        assert (layer.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_structured_pruning_mlp_gives_a_smaller_dense_model(tmp_path: Path, digits, mlp, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run(
        "structured_pruning",
        {"keep_ratio": 0.5, "finetune_epochs": 5},
        ModelState(onnx_path=mlp_onnx, torch_model=mlp),
        make_ctx(tmp_path, digits, (64,)),
    )
    assert [m.out_features for m in out.torch_model if hasattr(m, "out_features")] == [128, 128, 10]
    assert out.onnx_path.stat().st_size < 0.4 * mlp_onnx.stat().st_size
    assert accuracy(mlp_onnx, digits, (64,)) - accuracy(out.onnx_path, digits, (64,)) <= 2.0


def test_structured_pruning_cnn_channels(tmp_path: Path, digits, cnn, cnn_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run(
        "structured_pruning",
        {"keep_ratio": 0.5, "finetune_epochs": 3},
        ModelState(onnx_path=cnn_onnx, torch_model=cnn),
        make_ctx(tmp_path, digits, (1, 8, 8)),
    )
    convs = [m for m in out.torch_model if type(m).__name__ == "Conv2d"]
    assert [c.out_channels for c in convs] == [8, 16]
    assert tu.n_params(out.torch_model) < tu.n_params(cnn) / 3
    assert accuracy(cnn_onnx, digits, (1, 8, 8)) - accuracy(out.onnx_path, digits, (1, 8, 8)) <= 3.0


def test_distillation_student_is_4x_smaller_and_close(tmp_path: Path, digits, mlp, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run(
        "distillation",
        {"hidden": [64]},
        ModelState(onnx_path=mlp_onnx, torch_model=mlp),
        make_ctx(tmp_path, digits, (64,)),
    )
    assert tu.n_params(mlp) / out.info["params"] >= 4
    assert accuracy(mlp_onnx, digits, (64,)) - accuracy(out.onnx_path, digits, (64,)) <= 2.0


def test_architecture_search_respects_parameter_cap(tmp_path: Path, digits, mlp, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    cfg = {"widths": [8, 16, 32], "depths": [1], "max_params": 2000, "distill": {"epochs": 20}}
    out = _run(
        "architecture_search",
        cfg,
        ModelState(onnx_path=mlp_onnx, torch_model=mlp),
        make_ctx(tmp_path, digits, (64,), max_drop_pt=1.0),
    )
    assert out.info["params"] <= 2000
    assert all(t["params"] <= 2000 for t in out.info["search_trials"])
    assert out.info["student_hidden"] in ([8], [16])


def test_training_passes_refuse_an_onnx_only_input(tmp_path: Path, digits, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    from controller.compression.errors import MissingInputError

    with pytest.raises(MissingInputError, match="PyTorch"):
        _run("weight_pruning", {}, ModelState(onnx_path=mlp_onnx), make_ctx(tmp_path, digits, (64,)))


def test_mixed_precision_keeps_sensitive_nodes_in_float(tmp_path: Path, digits, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    from controller.compression.evaluate import Runner, score_outputs

    def score(p: Path) -> float:
        return score_outputs(Runner(p, "onnxruntime").predict(digits.calib.x), digits.calib.y, None)[1]

    ref = score(mlp_onnx)
    # an impossible budget forces the ranking and the fallback to its cap
    ctx = make_ctx(tmp_path, digits, (64,), score=score, reference_score=ref, max_drop_pt=-1.0)
    out = _run("mixed_precision", {"max_float_nodes": 2}, ModelState(onnx_path=mlp_onnx), ctx)
    assert out.precision == "int8+fp32"
    assert len(out.info["float_nodes"]) == 2
    assert set(out.info["impact_pt"]) == {n.name for n in onnx.load(str(mlp_onnx)).graph.node if n.op_type == "Gemm"}
    ranked = sorted(out.info["impact_pt"], key=lambda n: -out.info["impact_pt"][n])
    assert out.info["float_nodes"] == ranked[:2]
    # a loose budget keeps everything int8
    ctx2 = make_ctx(tmp_path / "loose", digits, (64,), score=score, reference_score=ref, max_drop_pt=5.0)
    out2 = _run("mixed_precision", {}, ModelState(onnx_path=mlp_onnx), ctx2)
    assert out2.info["float_nodes"] == [] and out2.precision == "int8"


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_tflite_int8_runs_in_litert_close_to_onnx(tmp_path: Path, digits, which, mlp_onnx, cnn_onnx) -> None:  # type: ignore[no-untyped-def]
    from ai_edge_litert.interpreter import Interpreter

    src, shape = (mlp_onnx, (64,)) if which == "mlp" else (cnn_onnx, (1, 8, 8))
    out = _run("tflite_int8", {}, ModelState(onnx_path=src), make_ctx(tmp_path, digits, shape))
    assert out.runtime == "litert" and out.artifact.suffix == ".tflite"
    it = Interpreter(model_path=str(out.artifact), num_threads=1)
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8
    lite = accuracy(out.artifact, digits, shape, runtime="litert")
    assert abs(accuracy(src, digits, shape) - lite) <= 1.5


def test_convolutional_student_for_a_cnn_teacher(tmp_path: Path, digits, cnn, cnn_onnx) -> None:  # type: ignore[no-untyped-def]
    out = _run(
        "distillation",
        {"conv_channels": [8, 16], "hidden": [], "epochs": 30},
        ModelState(onnx_path=cnn_onnx, torch_model=cnn),
        make_ctx(tmp_path, digits, (1, 8, 8)),
    )
    assert any(type(m).__name__ == "Conv2d" for m in out.torch_model)
    assert tu.n_params(cnn) / out.info["params"] >= 4
    assert accuracy(cnn_onnx, digits, (1, 8, 8)) - accuracy(out.onnx_path, digits, (1, 8, 8)) <= 2.0
