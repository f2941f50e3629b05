"""The search: limits always hold, failures are reported, seeds reproduce, odd models work."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from controller.compression.errors import CompressionFailed, UnsupportedOpError
from controller.compression.onnx_utils import sha256_file
from controller.compression.search import Candidate, compress
from shared.profiles import BUILTIN_PROFILES, DeviceProfile

ORT = BUILTIN_PROFILES["car-ecu"]


def _profile(**kw: object) -> DeviceProfile:
    return ORT.model_copy(update={"name": "test-profile", **kw})


def _assert_within(result, profile: DeviceProfile) -> None:  # type: ignore[no-untyped-def]
    best = result.best
    m = best.metrics
    assert best.ok and best.error is None and not best.violations
    assert best.runtime == profile.runtime
    assert all(p in profile.precisions for p in best.precision.split("+"))
    assert m.size_bytes <= profile.max_artifact_bytes
    assert m.p95_ms <= profile.p95_latency_ms
    assert m.memory_bytes <= profile.max_memory_bytes
    assert result.baseline.score - m.score <= profile.max_accuracy_drop_pt + 1e-9
    assert all(v["met"] for v in best.limits.values())


@pytest.mark.parametrize(
    "profile",
    [
        ORT,
        BUILTIN_PROFILES["medical-monitor"],
        _profile(max_artifact_bytes=120_000),  # fp32 (340 kB) and fp16 (171 kB) must lose
        _profile(max_artifact_bytes=120_000, precisions=["fp32", "int8"], max_accuracy_drop_pt=0.0),
    ],
    ids=["car-ecu", "medical-monitor", "size-120k", "size-120k-zero-drop"],
)
def test_search_never_returns_a_limit_breaking_candidate(tmp_path: Path, mlp_onnx, profile) -> None:  # type: ignore[no-untyped-def]
    result = compress(mlp_onnx, profile, "digits", workdir=tmp_path, latency_budget_s=0.2)
    _assert_within(result, profile)
    assert result.source.kind == "onnx"
    assert len(result.candidates) >= 3
    for c in result.candidates:  # the chosen one is the smallest on the wire among those that fit
        if c.ok:
            assert c.metrics.transfer_bytes >= result.best.metrics.transfer_bytes


def test_no_fit_raises_with_the_closest_candidates(tmp_path: Path, mlp_onnx) -> None:  # type: ignore[no-untyped-def]
    tight = _profile(max_artifact_bytes=1000, p95_latency_ms=0.0001)
    with pytest.raises(CompressionFailed) as info:
        compress(mlp_onnx, tight, "digits", workdir=tmp_path, latency_budget_s=0.1)
    report = info.value.report
    assert 1 <= len(report) <= 5
    for r in report:
        assert any(v.startswith("size") for v in r["violations"])
        assert any(v.startswith("p95") for v in r["violations"])
        assert r["metrics"]["size_bytes"] > 1000
    assert "size" in str(info.value) and "test-profile" in str(info.value)


def test_litert_profile_gets_a_tflite_that_fits(tmp_path: Path, cnn_onnx) -> None:  # type: ignore[no-untyped-def]
    lock = BUILTIN_PROFILES["smart-lock"]
    result = compress(cnn_onnx, lock, "digits", workdir=tmp_path, latency_budget_s=0.2)
    _assert_within(result, lock)
    assert result.best.artifact.suffix == ".tflite"


def test_same_seed_same_result(tmp_path: Path) -> None:
    cands = [
        Candidate(
            "prune+int8",
            [("weight_pruning", {"sparsity": 0.7, "steps": 1, "finetune_epochs": 2}), ("quantize_static_int8", {})],
        ),
        Candidate("student", [("distillation", {"hidden": [16], "epochs": 5})]),
    ]
    spec = "controller.compression.examples:digits_mlp"

    def run(seed: int, sub: str):  # type: ignore[no-untyped-def]
        r = compress(
            spec, _profile(), "digits", workdir=tmp_path / sub, seed=seed, candidates=cands, latency_budget_s=0.05
        )
        return [(c.name, sha256_file(c.artifact), c.metrics.score) for c in r.candidates]

    first, again, other = run(1, "a"), run(1, "b"), run(2, "c")
    assert first == again
    assert [h for _, h, _ in first] != [h for _, h, _ in other]


def test_custom_domain_op_is_refused_by_name(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    node = helper.make_node("FancyNorm", ["x"], ["y"], name="fancy_0", domain="com.example")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 4), np.float32))
    with pytest.raises(UnsupportedOpError, match=r"FancyNorm.*fancy_0") as info:
        compress(path, ORT, tmp_path / "d.npz", workdir=tmp_path / "w")
    assert info.value.node_name == "fancy_0"


def test_tflite_converter_names_an_op_it_cannot_translate(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    from controller.compression.passes import ModelState, get_pass
    from tests.compression.helpers import make_ctx

    class CumNet(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, dim=1)[:, :10]

    path = tmp_path / "cum.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(CumNet(), (torch.zeros(1, 64),), str(path), dynamo=False, opset_version=17)
    with pytest.raises(UnsupportedOpError, match="CumSum") as info:
        get_pass("tflite_int8")()(ModelState(onnx_path=path), make_ctx(tmp_path, digits, (64,)))
    assert info.value.op_type == "CumSum" and info.value.node_name


def test_transformer_encoder_with_dynamic_axes_quantizes_and_evaluates(tmp_path: Path, encoder_onnx) -> None:  # type: ignore[no-untyped-def]
    model_path, data_path = encoder_onnx
    dims = onnx.load(str(model_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "seq"]
    cands = [
        Candidate("int8-dynamic", [("quantize_dynamic_int8", {})]),
        Candidate("int8-static", [("quantize_static_int8", {})]),
    ]
    result = compress(
        model_path,
        _profile(max_accuracy_drop_pt=5.0),
        data_path,
        workdir=tmp_path,
        candidates=cands,
        latency_budget_s=0.1,
    )
    assert result.baseline.metric == "agreement"  # no labels in the npz -> fidelity to the original
    for c in result.candidates:
        assert c.error is None, c.error
        assert c.precision == "int8"
        assert c.metrics.cosine > 0.99
        assert c.metrics.agreement >= 90
    # the quantized model still accepts other sequence lengths
    import onnxruntime as ort

    sess = ort.InferenceSession(str(result.best.artifact), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 11, 32), np.float32)})[0].shape == (3, 5)


def test_cli_writes_artifact_and_card_and_registers(tmp_path: Path, mlp_onnx, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from controller.compression.cli import compress_command

    sent: dict[str, object] = {}

    def fake_post(url: str, **kw: object) -> httpx.Response:
        sent["url"], sent["data"] = url, kw["data"]
        sent["file"] = kw["files"]["file"][0]  # type: ignore[index]
        sent["samples"] = kw["files"]["samples"][0]  # type: ignore[index]
        return httpx.Response(201, json={"name": "x", "version": 1}, request=httpx.Request("POST", url))

    monkeypatch.setattr(httpx, "post", fake_post)
    args = argparse.Namespace(
        model=str(mlp_onnx),
        profile="car-ecu",
        data="digits",
        out=str(tmp_path / "out"),
        seed=0,
        register="http://ctl:8080",
    )
    assert compress_command(args) == 0
    card_path = next((tmp_path / "out").glob("*.card.json"))
    card = json.loads(card_path.read_text())
    artifact = tmp_path / "out" / card["artifact"]["file"]
    assert sha256_file(artifact) == card["artifact"]["sha256"]
    assert card["source"]["sha256"] == sha256_file(mlp_onnx)
    assert card["limits_met"] is True and card["profile"]["name"] == "car-ecu"
    assert card["pipeline"] and "metrics" in card and "search" in card
    assert sent["url"] == "http://ctl:8080/api/v1/models"
    assert sent["samples"] == "samples.npz"
    data = sent["data"]
    assert data["runtime"] == "onnxruntime" and data["profile"] == "car-ecu"  # type: ignore[index]
    assert json.loads(data["card"])["artifact"]["sha256"] == card["artifact"]["sha256"]  # type: ignore[index]
    assert "chosen" in capsys.readouterr().out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1_000, 5_000_000),  # size
            st.floats(0.001, 50.0),  # p95 ms
            st.floats(-1.0, 10.0),  # accuracy drop
            st.integers(10_000, 300_000_000),  # memory
            st.sampled_from(["fp32", "fp16", "int8", "int8+fp32"]),
            st.booleans(),  # pass error
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(sorted(BUILTIN_PROFILES)),
)
def test_pick_best_never_returns_a_limit_breaker(cands, profile_name) -> None:  # type: ignore[no-untyped-def]
    from controller.compression.evaluate import Metrics
    from controller.compression.search import CandidateResult, check_limits, pick_best

    profile = BUILTIN_PROFILES[profile_name]
    results = []
    for i, (size, p95, drop, mem, prec, err) in enumerate(cands):
        m = Metrics("accuracy", 90 - drop, 0, 1, size, size // 2, p95, p95, p95, p95, mem)
        r = CandidateResult(f"c{i}", [], profile.runtime, prec, Path("x"), m, drop, error="boom" if err else None)
        r.limits, r.violations = check_limits(profile, prec, profile.runtime, m, drop)
        results.append(r)
    fits = [r for r in results if r.error is None and not r.violations]
    if not fits:
        with pytest.raises(CompressionFailed) as info:
            pick_best(results, profile)
        assert 1 <= len(info.value.report) <= 5
        return
    best = pick_best(results, profile)
    m = best.metrics
    assert best.error is None
    assert m.size_bytes <= profile.max_artifact_bytes and m.p95_ms <= profile.p95_latency_ms
    assert m.memory_bytes <= profile.max_memory_bytes
    assert best.accuracy_drop_pt <= profile.max_accuracy_drop_pt
    assert all(p in profile.precisions for p in best.precision.split("+"))
    assert m.transfer_bytes == min(r.metrics.transfer_bytes for r in fits)
