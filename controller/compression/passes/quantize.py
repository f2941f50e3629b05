"""Post-training quantization of ONNX models (no training, no labels needed).

* ``quantize_dynamic_int8``: int8 weights, activations quantized per call (MatMul/Gemm).
* ``quantize_static_int8``: calibrated QDQ, per-channel int8 weights, after onnxruntime's
  ``quant_pre_process`` (symbolic shape inference + graph optimisation).
* ``fp16``: float16 weight storage (see ``onnx_utils.to_fp16_storage``).
* ``mixed_precision``: static int8, then - if the accuracy budget breaks - keep the nodes whose
  quantization hurts most (measured one by one) in float until the budget holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from controller.compression.passes.base import ModelState, Pass, PassConfig, PassContext, register


def preprocess(src: Path, ctx: PassContext) -> Path:
    """onnxruntime's recommended pre-quantization step; falls back to the raw model if it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = ctx.new_path("preprocessed")
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
    except Exception as e:  # symbolic shape inference rejects some graphs; optimisation-only still helps
        ctx.log(f"quant_pre_process failed ({type(e).__name__}: {str(e)[:120]}); retrying without symbolic shapes")
        try:
            quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
        except Exception:
            return src
    return out


class _Reader:
    """CalibrationDataReader over the calibration split, in mini-batches."""

    def __init__(self, input_name: str, x: np.ndarray, batch: int = 32) -> None:
        self._it = iter([{input_name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


class DynamicInt8Config(PassConfig):
    op_types: list[str] = Field(default_factory=lambda: ["MatMul", "Attention", "LSTM"])
    per_channel: bool = False


@register
class QuantizeDynamicInt8(Pass):
    name = "quantize_dynamic_int8"
    Config = DynamicInt8Config

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from controller.compression import onnx_utils

        cfg: DynamicInt8Config = self.config  # type: ignore[assignment]
        model = onnx_utils.gemm_to_matmul(onnx.load(str(state.onnx_path)))
        src = ctx.new_path("matmul")
        onnx.save(model, str(src))
        src = preprocess(src, ctx)
        out = ctx.new_path("dyn-int8")
        quantize_dynamic(
            str(src),
            str(out),
            op_types_to_quantize=cfg.op_types,
            per_channel=cfg.per_channel,
            weight_type=QuantType.QInt8,
        )
        return state.evolve(onnx_path=out, precision="int8")


class StaticInt8Config(PassConfig):
    per_channel: bool = True
    activation_type: Literal["uint8", "int8"] = "uint8"
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    nodes_to_exclude: list[str] = Field(default_factory=list)


def quantize_static_file(src: Path, out: Path, ctx: PassContext, cfg: StaticInt8Config) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from controller.compression import onnx_utils
    from controller.compression.data import fit_shape

    name, _ = onnx_utils.input_info(onnx.load(str(src)))
    x = fit_shape(ctx.data.calib.x, ctx.sample_shape)
    quantize_static(
        str(src),
        str(out),
        _Reader(name, x),
        quant_format=QuantFormat.QDQ,
        per_channel=cfg.per_channel,
        activation_type=QuantType.QUInt8 if cfg.activation_type == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[cfg.calibrate_method],
        nodes_to_exclude=list(cfg.nodes_to_exclude),
    )
    return out


@register
class QuantizeStaticInt8(Pass):
    name = "quantize_static_int8"
    Config = StaticInt8Config

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        src = preprocess(state.onnx_path, ctx)
        out = quantize_static_file(src, ctx.new_path("static-int8"), ctx, self.config)  # type: ignore[arg-type]
        return state.evolve(onnx_path=out, precision="int8")


@register
class Fp16(Pass):
    name = "fp16"

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        import onnx

        from controller.compression import onnx_utils

        model = onnx_utils.to_fp16_storage(onnx.load(str(state.onnx_path)))
        out = ctx.new_path("fp16")
        onnx.save(model, str(out))
        return state.evolve(onnx_path=out, precision="fp16")


class MixedPrecisionConfig(PassConfig):
    quantizable: list[str] = Field(default_factory=lambda: ["MatMul", "Gemm", "Conv"])
    max_float_nodes: int = Field(default=8, ge=0)
    #: Only this many largest nodes are ranked (each ranking costs one quantization).
    max_ranked: int = Field(default=24, ge=1)
    #: Fraction of the accuracy budget the calibration-split score may use; ranking runs on the
    #: calibration rows, so leave headroom for the held-out measurement that follows.
    budget_fraction: float = Field(default=0.25, gt=0, le=1)
    static: StaticInt8Config = Field(default_factory=StaticInt8Config)


@register
class MixedPrecisionFallback(Pass):
    name = "mixed_precision"
    Config = MixedPrecisionConfig

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        import onnx

        cfg: MixedPrecisionConfig = self.config  # type: ignore[assignment]
        if ctx.score is None or ctx.reference_score is None or ctx.max_drop_pt is None:
            raise ValueError("mixed_precision needs ctx.score, ctx.reference_score and ctx.max_drop_pt")
        src = preprocess(state.onnx_path, ctx)
        model = onnx.load(str(src))

        def quant(exclude: list[str]) -> tuple[Path, float]:
            c = cfg.static.model_copy(update={"nodes_to_exclude": exclude})
            p = quantize_static_file(src, ctx.new_path("mixed"), ctx, c)
            return p, ctx.score(p)  # type: ignore[misc]

        path, score = quant([])
        budget = ctx.max_drop_pt * cfg.budget_fraction
        ctx.log(f"mixed precision: full int8 scores {score:.2f} vs {ctx.reference_score:.2f} (budget {budget:.2f} pt)")
        if ctx.reference_score - score <= budget:
            return state.evolve(onnx_path=path, precision="int8", info={"float_nodes": []})
        sizes = _node_weight_sizes(model)
        nodes = [n.name for n in model.graph.node if n.op_type in cfg.quantizable and n.name]
        nodes = sorted(nodes, key=lambda n: -sizes.get(n, 0))[: cfg.max_ranked]
        impact = {n: quant([n])[1] - score for n in nodes}
        ranked = sorted(nodes, key=lambda n: (-impact[n], n))
        ctx.log("mixed precision: most sensitive " + ", ".join(f"{n} (+{impact[n]:.2f} pt)" for n in ranked[:4]))
        excluded: list[str] = []
        for n in ranked[: cfg.max_float_nodes]:
            excluded.append(n)
            path, score = quant(excluded)
            if ctx.reference_score - score <= budget:
                break
        precision = "int8+fp32" if excluded else "int8"
        return state.evolve(
            onnx_path=path,
            precision=precision,
            info={"float_nodes": excluded, "impact_pt": {n: impact[n] for n in ranked}},
        )


def _node_weight_sizes(model: Any) -> dict[str, int]:
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i).size for i in model.graph.initializer}
    return {n.name: sum(inits.get(i, 0) for i in n.input) for n in model.graph.node}
