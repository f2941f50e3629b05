"""Constraint-driven search: try candidate pipelines for a profile, measure each, keep the best
that meets every limit (smallest transfer size, then p95 latency).  Never returns a candidate
that breaks a limit; when none fits, raises :class:`CompressionFailed` with the closest ones.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.compression.data import Dataset, Splits, fit_shape, load_data, split
from controller.compression.errors import CompressionError, CompressionFailed, MissingInputError
from controller.compression.evaluate import Metrics, Runner, measure, score_outputs
from shared.profiles import DeviceProfile, get_profile

Step = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Candidate:
    name: str
    steps: list[Step]
    #: Run only when this other candidate broke nothing but the accuracy budget.
    fallback_for: str | None = None


@dataclass
class Source:
    spec: str
    onnx_path: Path
    sha256: str
    kind: str  # "onnx" | "torch"
    sample_shape: tuple[int, ...]
    torch_model: Any | None = None


@dataclass
class CandidateResult:
    name: str
    steps: list[dict[str, Any]]
    runtime: str
    precision: str = "fp32"
    artifact: Path | None = None
    metrics: Metrics | None = None
    accuracy_drop_pt: float | None = None
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.violations and self.metrics is not None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": self.steps,
            "runtime": self.runtime,
            "precision": self.precision,
            "metrics": self.metrics.as_dict() if self.metrics else None,
            "accuracy_drop_pt": self.accuracy_drop_pt,
            "violations": self.violations,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class SearchResult:
    profile: DeviceProfile
    source: Source
    data_name: str
    seed: int
    baseline: Metrics
    best: CandidateResult
    candidates: list[CandidateResult]
    seconds: float


def prepare_source(model: str | Path, workdir: Path, data: Dataset) -> Source:
    """Load MODEL: an .onnx file, or a PyTorch spec (module:function or .pt) exported to ONNX."""
    from controller.compression import onnx_utils
    from controller.compression import torch_utils as tu

    spec = str(model)
    if spec.endswith(".onnx"):
        path = Path(spec)
        if not path.is_file():
            raise MissingInputError(f"no such ONNX file: {spec}")
        proto = onnx_utils.load(path)
        onnx_utils.check_supported(proto)
        _, shape = onnx_utils.input_info(proto)
        if any(d < 0 for d in shape):  # e.g. dynamic sequence length: take it from the data
            shape = tuple(data.x.shape[1:])
        return Source(spec, path, onnx_utils.sha256_file(path), "onnx", shape)
    if not tu.is_torch_spec(spec):
        raise MissingInputError(f"MODEL {spec!r} is neither an .onnx file nor a PyTorch spec (module:function, .pt)")
    module = tu.load_torch_model(spec)
    # a module may say what one sample looks like (e.g. (1, 8, 8) for a CNN fed flat digits)
    shape = tuple(getattr(module, "input_shape", None) or data.x.shape[1:])
    data_x = fit_shape(data.x[:1], shape)
    try:
        import torch

        with torch.no_grad():
            module(torch.from_numpy(data_x))
    except Exception:
        raise MissingInputError(f"model {spec!r} does not accept data rows of shape {shape}") from None
    path = tu.export_onnx(module, shape, workdir / "source.onnx")
    digest = onnx_utils.sha256_file(Path(spec)) if Path(spec).is_file() else onnx_utils.sha256_file(path)
    return Source(spec, path, digest, "torch", shape, torch_model=module)


def candidate_pipelines(
    profile: DeviceProfile, *, has_torch: bool, has_labels: bool, image_input: bool = False
) -> list[Candidate]:
    """Pipelines worth trying for the profile's runtime and precisions, given what the inputs unlock."""
    train = has_torch and has_labels
    cands: list[Candidate] = []
    if profile.runtime == "litert":
        if "int8" not in profile.precisions:
            return cands
        cands.append(Candidate("tflite-int8", [("tflite_int8", {})]))
        if train:
            cands += [
                Candidate("prune80+tflite-int8", [("weight_pruning", {"sparsity": 0.8}), ("tflite_int8", {})]),
                Candidate("channels50+tflite-int8", [("structured_pruning", {"keep_ratio": 0.5}), ("tflite_int8", {})]),
                *_students("tflite-int8", [("tflite_int8", {})], image_input),
            ]
        return cands
    if "fp32" in profile.precisions:
        cands.append(Candidate("fp32", []))
    if "fp16" in profile.precisions:
        cands.append(Candidate("fp16", [("fp16", {})]))
    if "int8" in profile.precisions:
        cands += [
            Candidate("int8-dynamic", [("quantize_dynamic_int8", {})]),
            Candidate("int8-static", [("quantize_static_int8", {})]),
        ]
        if "fp32" in profile.precisions:
            cands.append(Candidate("int8-mixed", [("mixed_precision", {})], fallback_for="int8-static"))
        if train:
            cands += [
                Candidate("prune80+int8", [("weight_pruning", {"sparsity": 0.8}), ("quantize_static_int8", {})]),
                Candidate(
                    "channels50+int8", [("structured_pruning", {"keep_ratio": 0.5}), ("quantize_static_int8", {})]
                ),
                *_students("int8", [("quantize_static_int8", {})], image_input),
            ]
    elif train and "fp32" in profile.precisions:
        cands += _students("fp32", [], image_input)
    return cands


#: Student widths/depths the search tries (Hinton distillation from the given teacher); the
#: search itself is the architecture search: every student is measured against the profile.
STUDENTS: list[list[int]] = [[32], [64], [64, 64], [128]]
CONV_STUDENTS: list[list[int]] = [[8, 16], [16, 32]]


def _students(suffix: str, tail: list[Step], image_input: bool) -> list[Candidate]:
    out = [
        Candidate(f"student-{'x'.join(map(str, h))}+{suffix}", [("distillation", {"hidden": h}), *tail])
        for h in STUDENTS
    ]
    if image_input:  # (C, H, W) inputs also get small convolutional students
        out += [
            Candidate(
                f"student-c{'x'.join(map(str, c))}+{suffix}",
                [("distillation", {"conv_channels": c, "hidden": []}), *tail],
            )
            for c in CONV_STUDENTS
        ]
    return out


def check_limits(
    profile: DeviceProfile, precision: str, runtime: str, m: Metrics, drop: float
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    limits: dict[str, dict[str, Any]] = {}

    def lim(key: str, measured: Any, limit: Any, met: bool, text: str) -> None:
        limits[key] = {"measured": measured, "limit": limit, "met": bool(met)}
        if not met:
            violations.append(text)

    violations: list[str] = []
    lim("runtime", runtime, profile.runtime, runtime == profile.runtime, f"runtime {runtime} != {profile.runtime}")
    parts = precision.split("+")
    lim(
        "precisions",
        precision,
        profile.precisions,
        all(p in profile.precisions for p in parts),
        f"precision {precision} not in {profile.precisions}",
    )
    lim(
        "max_artifact_bytes",
        m.size_bytes,
        profile.max_artifact_bytes,
        m.size_bytes <= profile.max_artifact_bytes,
        f"size {m.size_bytes} B > {profile.max_artifact_bytes} B",
    )
    lim(
        "p95_latency_ms",
        round(m.p95_ms, 4),
        profile.p95_latency_ms,
        m.p95_ms <= profile.p95_latency_ms,
        f"p95 {m.p95_ms:.3f} ms > {profile.p95_latency_ms} ms",
    )
    lim(
        "max_accuracy_drop_pt",
        round(drop, 3),
        profile.max_accuracy_drop_pt,
        drop <= profile.max_accuracy_drop_pt + 1e-9,
        f"{m.metric} drop {drop:.2f} pt > {profile.max_accuracy_drop_pt} pt",
    )
    lim(
        "max_memory_bytes",
        m.memory_bytes,
        profile.max_memory_bytes,
        m.memory_bytes <= profile.max_memory_bytes,
        f"memory {m.memory_bytes} B > {profile.max_memory_bytes} B",
    )
    return limits, violations


def _closeness(r: CandidateResult, profile: DeviceProfile) -> tuple[int, float]:
    if r.error is not None or r.metrics is None:
        return (99, float("inf"))
    excess = 0.0
    for v in r.limits.values():
        if not v["met"] and isinstance(v["measured"], int | float):
            excess += (float(v["measured"]) - float(v["limit"])) / max(float(v["limit"]), 1e-9)
    return (len(r.violations), excess)


def pick_best(results: list[CandidateResult], profile: DeviceProfile) -> CandidateResult:
    """Smallest transfer, then lowest p95, among candidates that meet every limit.

    Limits are re-checked here from the measured figures, so a candidate whose ``violations`` list
    was left empty by mistake still cannot slip through.
    """
    feasible = []
    for r in results:
        if r.error is not None or r.metrics is None or r.accuracy_drop_pt is None:
            continue
        _, violations = check_limits(profile, r.precision, r.runtime, r.metrics, r.accuracy_drop_pt)
        if not violations and not r.violations:
            feasible.append(r)
    if not feasible:
        closest = sorted(results, key=lambda r: _closeness(r, profile))[:5]
        raise CompressionFailed(profile.name, [r.summary() for r in closest])
    return min(feasible, key=lambda r: (r.metrics.transfer_bytes, r.metrics.p95_ms))  # type: ignore[union-attr]


Progress = Callable[[str, int, int, CandidateResult | None], None]


def compress(
    model: str | Path,
    profile: DeviceProfile | str,
    data: str | Path | Dataset,
    *,
    workdir: Path | None = None,
    seed: int = 0,
    candidates: list[Candidate] | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda _m: None,
    latency_budget_s: float = 1.0,
    compact: bool = True,
) -> SearchResult:
    """Search pipelines for ``profile`` and return the best result; raise CompressionFailed if none fits.

    With ``compact`` (default) every ONNX candidate ends with the lossless ``compact`` pass.
    """
    from controller.compression import torch_utils as tu
    from controller.compression.passes import ModelState, PassContext, get_pass

    t_start = time.perf_counter()
    prof = get_profile(profile) if isinstance(profile, str) else profile
    ds = data if isinstance(data, Dataset) else load_data(data)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="edgefleet-compress-"))
    workdir.mkdir(parents=True, exist_ok=True)
    src = prepare_source(model, workdir, ds)
    splits: Splits = split(ds)
    x_eval = fit_shape(splits.eval.x, src.sample_shape)
    x_cal = fit_shape(splits.calib.x, src.sample_shape)
    ref_runner = Runner(src.onnx_path, "onnxruntime")
    reference_eval = ref_runner.predict(x_eval)
    reference_cal = ref_runner.predict(x_cal)
    baseline = measure(
        src.onnx_path,
        "onnxruntime",
        x=x_eval,
        y=splits.eval.y,
        sample_shape=src.sample_shape,
        reference=reference_eval,
        slowdown=prof.compute_slowdown,
        latency_budget_s=latency_budget_s,
    )
    cal_y = splits.calib.y

    def score_cal(path: Path) -> float:
        return score_outputs(Runner(path, "onnxruntime").predict(x_cal), cal_y, reference_cal)[1]

    if candidates is None:
        candidates = candidate_pipelines(
            prof,
            has_torch=src.torch_model is not None,
            has_labels=ds.y is not None,
            image_input=len(src.sample_shape) == 3,
        )
    if not candidates:
        raise CompressionError(
            f"no pipeline can target profile {prof.name!r} (runtime {prof.runtime}, precisions {prof.precisions})"
        )
    results: list[CandidateResult] = []
    by_name: dict[str, CandidateResult] = {}
    for i, cand in enumerate(candidates):
        if cand.fallback_for is not None:
            prior = by_name.get(cand.fallback_for)
            if prior is None or prior.ok or prior.error or any("drop" not in v for v in prior.violations):
                continue  # the fallback only helps when int8 broke nothing but the accuracy budget
        if progress:
            progress("start", i, len(candidates), None)
        tu.seed_all(seed)
        ctx = PassContext(
            workdir=workdir / f"{i:02d}-{cand.name}",
            data=splits,
            sample_shape=src.sample_shape,
            seed=seed,
            score=score_cal,
            reference_score=score_cal(src.onnx_path),
            max_drop_pt=prof.max_accuracy_drop_pt,
            log=log,
        )
        state = ModelState(onnx_path=src.onnx_path, torch_model=src.torch_model)
        passes = [get_pass(name)(cfg) for name, cfg in cand.steps]
        res = CandidateResult(cand.name, [p.describe() for p in passes], prof.runtime)
        t0 = time.perf_counter()
        try:
            for p in passes:
                state = p(state, ctx)
            if compact and state.tflite_path is None and not any(p.name == "compact" for p in passes):
                # lossless last step for every ONNX artifact (the fp32 candidate included); the
                # baseline stays the uploaded file, so size ratios compare against what was uploaded
                finisher = get_pass("compact")()
                state = finisher(state, ctx)
                res.steps.append(finisher.describe())
            res.runtime, res.precision, res.artifact, res.info = (
                state.runtime,
                state.precision,
                state.artifact,
                state.info,
            )
            m = measure(
                state.artifact,
                state.runtime,
                x=x_eval,
                y=splits.eval.y,
                sample_shape=src.sample_shape,
                reference=reference_eval,
                slowdown=prof.compute_slowdown,
                latency_budget_s=latency_budget_s,
            )
            res.metrics = m
            res.accuracy_drop_pt = baseline.score - m.score
            res.limits, res.violations = check_limits(prof, res.precision, res.runtime, m, res.accuracy_drop_pt)
        except CompressionError as e:
            res.error = f"{type(e).__name__}: {e}"
        except Exception as e:  # a failing pass must not sink the whole search; the report names it
            res.error = f"{type(e).__name__}: {str(e)[:300]}"
        res.seconds = time.perf_counter() - t0
        log(f"{cand.name}: " + ("ok" if res.ok else "; ".join(res.violations) or str(res.error)))
        results.append(res)
        by_name[cand.name] = res
        if progress:
            progress("done", i, len(candidates), res)
    best = pick_best(results, prof)
    return SearchResult(prof, src, ds.name, seed, baseline, best, results, time.perf_counter() - t_start)


def reference_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    return Runner(path, "onnxruntime").predict(x)
