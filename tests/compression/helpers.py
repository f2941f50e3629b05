"""Helpers shared by the compression tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controller.compression.data import Splits, fit_shape
from controller.compression.evaluate import Runner, score_outputs
from controller.compression.passes import PassContext


def make_ctx(tmp_path: Path, splits: Splits, shape: tuple[int, ...], **kw: object) -> PassContext:
    return PassContext(workdir=tmp_path, data=splits, sample_shape=shape, **kw)  # type: ignore[arg-type]


def accuracy(path: Path, splits: Splits, shape: tuple[int, ...], runtime: str = "onnxruntime") -> float:
    out = Runner(path, runtime).predict(fit_shape(splits.eval.x, shape).astype(np.float32))
    return score_outputs(out, splits.eval.y, None)[1]
