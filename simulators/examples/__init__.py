"""Example models and data sets bundled with edgefleet (built by ``edgefleet examples``).

Importing this package is cheap: numpy only. ``build`` (torch, TensorFlow) is
imported only to rebuild the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

_DATASETS = {"digits": "digits_test.npz", "digits_test": "digits_test.npz", "digits_samples": "digits_samples.npz"}


def examples_dir() -> Path:
    """Directory holding the committed example files."""
    return Path(__file__).resolve().parent


def manifest() -> dict[str, Any]:
    """The parsed ``manifest.json`` (files, sha256, shapes, measured accuracy)."""
    data: dict[str, Any] = json.loads((examples_dir() / "manifest.json").read_text())
    return data


def model_path(name: str) -> Path:
    """Path of a bundled model file, e.g. ``model_path("digits_mlp.onnx")``."""
    path = examples_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no example model {name!r} in {examples_dir()}; run `edgefleet examples`")
    return path


def load_dataset(name: str = "digits") -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, y)`` of a bundled data set; ``y`` is None where the file has no labels.

    ``"digits"`` (alias ``"digits_test"``) is the held-out test split, float32
    features in [0, 1]; ``"digits_samples"`` a few rows for self-test vectors.
    """
    try:
        fname = _DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; bundled: {', '.join(sorted(_DATASETS))}") from None
    with np.load(examples_dir() / fname) as f:
        x = f["x"].astype(np.float32)
        y = f["y"] if "y" in f.files else None
    return x, y


__all__ = ["examples_dir", "load_dataset", "manifest", "model_path"]
