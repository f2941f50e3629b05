"""Measure an artifact the way the device will run it.

* **accuracy**: top-1 on the labelled eval split; without labels, **fidelity** to the uploaded
  model on the same rows - top-1 agreement (classifiers) or cosine similarity x 100 (single
  output).  Both are in percent so a profile's ``max_accuracy_drop_pt`` applies to either.
* **size**: bytes on disk; **transfer**: bytes of the zstd (level 19) frame the controller sends.
* **latency**: batch-1 calls with the target runtime on one thread (onnxruntime
  ``intra_op_num_threads=1`` / LiteRT ``num_threads=1``), p50/p95 of warm calls, multiplied by the
  profile's ``compute_slowdown``.
* **memory**: resident-set growth of this process from before the session is created until after
  a warm-up call, measured on a second load so the runtime's one-off library initialisation is
  not charged to the model (weights + arena + interpreter buffers), floored at the artifact size.  RSS is
  page-granular and allocator reuse can hide growth, so treat it as an estimate.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.compression.data import fit_shape


@dataclass(frozen=True)
class Metrics:
    metric: str
    score: float
    agreement: float
    cosine: float
    size_bytes: int
    transfer_bytes: int
    p50_ms: float
    p95_ms: float
    host_p50_ms: float
    host_p95_ms: float
    memory_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # non-Linux: fall back to peak RSS (ru_maxrss is KiB on Linux, bytes on macOS)
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class Runner:
    """Batch prediction with a loaded artifact; ``predict(x)`` returns float32 outputs."""

    def __init__(self, path: Path, runtime: str) -> None:
        self.runtime = runtime
        if runtime == "litert":
            from ai_edge_litert.interpreter import Interpreter

            self._it = Interpreter(model_path=str(path), num_threads=1)
            self._it.allocate_tensors()
            self._in = self._it.get_input_details()[0]
            self._out = self._it.get_output_details()[0]
        else:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.log_severity_level = 3
            self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            self._name = self._sess.get_inputs()[0].name

    def predict_one(self, row: np.ndarray) -> np.ndarray:
        if self.runtime != "litert":
            return self._sess.run(None, {self._name: row})[0]  # type: ignore[no-any-return]
        d = self._in
        if d["dtype"] == np.int8 or d["dtype"] == np.uint8:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            row = np.clip(np.round(row / scale + zp), info.min, info.max).astype(d["dtype"])
        self._it.set_tensor(d["index"], row)
        self._it.invoke()
        out = self._it.get_tensor(self._out["index"])
        if self._out["dtype"] in (np.int8, np.uint8):
            scale, zp = self._out["quantization"]
            out = (out.astype(np.float32) - zp) * scale
        return np.asarray(out, dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.runtime != "litert":
            return np.asarray(self._sess.run(None, {self._name: x})[0], dtype=np.float32)
        return np.concatenate([self.predict_one(x[i : i + 1]) for i in range(len(x))])


def score_outputs(
    out: np.ndarray, y: np.ndarray | None, reference: np.ndarray | None
) -> tuple[str, float, float, float]:
    """(metric, score, agreement %, cosine) of outputs against labels or the reference outputs."""
    out2 = out.reshape(len(out), -1)
    agreement = cosine = float("nan")
    if reference is not None:
        ref2 = reference.reshape(len(reference), -1)
        num = (out2 * ref2).sum(1)
        den = np.linalg.norm(out2, axis=1) * np.linalg.norm(ref2, axis=1) + 1e-12
        cosine = float((num / den).mean())
        if out2.shape[1] > 1:
            agreement = float((out2.argmax(1) == ref2.argmax(1)).mean() * 100)
    if y is not None:
        return "accuracy", float((out2.argmax(1) == y).mean() * 100), agreement, cosine
    if out2.shape[1] > 1:
        return "agreement", agreement, agreement, cosine
    return "cosine", cosine * 100, agreement, cosine


def transfer_size(path: Path, level: int = 19) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=level).compress(path.read_bytes()))


def latency_ms(
    runner: Runner, row: np.ndarray, *, warmup: int = 20, max_runs: int = 400, min_runs: int = 50, budget_s: float = 1.0
) -> tuple[float, float]:
    for _ in range(warmup):
        runner.predict_one(row)
    times: list[float] = []
    t_end = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < t_end):
        t0 = time.perf_counter_ns()
        runner.predict_one(row)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def measure(
    path: Path,
    runtime: str,
    *,
    x: np.ndarray,
    y: np.ndarray | None,
    sample_shape: tuple[int, ...],
    reference: np.ndarray | None,
    slowdown: float = 1.0,
    latency_budget_s: float = 1.0,
) -> Metrics:
    x = fit_shape(x, sample_shape).astype(np.float32)
    Runner(path, runtime).predict_one(x[:1])  # one-off library init (shared code pages) is not the model's
    rss0 = _rss()
    runner = Runner(path, runtime)
    runner.predict_one(x[:1])
    memory = max(_rss() - rss0, path.stat().st_size)
    out = runner.predict(x)
    metric, score, agreement, cosine = score_outputs(out, y, reference)
    p50, p95 = latency_ms(runner, x[:1], budget_s=latency_budget_s)
    return Metrics(
        metric=metric,
        score=score,
        agreement=agreement,
        cosine=cosine,
        size_bytes=path.stat().st_size,
        transfer_bytes=transfer_size(path),
        p50_ms=p50 * slowdown,
        p95_ms=p95 * slowdown,
        host_p50_ms=p50,
        host_p95_ms=p95,
        memory_bytes=int(memory),
    )
