"""Run a manifest's self-test vectors on a freshly loaded model.

The controller measured these outputs on the artifact it signed; a device
whose runtime computes something else (a broken build, a missing op, a
quantization mismatch) must not switch to it.
"""

from __future__ import annotations

import numpy as np

from agent.runtimes import RUNTIME_ERRORS, Model, map_runtime_error
from shared.errors import SelfTestError
from shared.messages import SelfTestVector


def run_self_test(model: Model, vectors: list[SelfTestVector]) -> None:
    """Raise SelfTestError on the first vector whose output disagrees; ModelLoadError if the model cannot run."""
    for i, vector in enumerate(vectors):
        try:
            x = np.asarray(vector.data, dtype=vector.input_dtype).reshape(vector.input_shape)
        except ValueError as exc:
            raise SelfTestError(f"vector {i}: data does not fit shape {vector.input_shape}") from exc
        try:
            y = np.asarray(model.run(x), dtype=np.float64).ravel()
        except RUNTIME_ERRORS as exc:
            raise map_runtime_error(exc, f"self-test vector {i}") from exc
        _compare(i, vector, y)


def _compare(i: int, vector: SelfTestVector, y: np.ndarray) -> None:
    if vector.expected is not None:
        expected = np.asarray(vector.expected, dtype=np.float64)
        if expected.shape != y.shape:
            raise SelfTestError(f"vector {i}: output has {y.size} values, expected {expected.size}")
        worst = float(np.max(np.abs(expected - y))) if y.size else 0.0
        if not np.isfinite(worst) or worst > vector.atol:
            raise SelfTestError(f"vector {i}: max abs error {worst:.3g} > atol {vector.atol:.3g}")
    if vector.expected_top1 is not None:
        top1 = int(np.argmax(y))
        if top1 != vector.expected_top1:
            raise SelfTestError(f"vector {i}: top-1 {top1}, expected {vector.expected_top1}")


__all__ = ["run_self_test"]
