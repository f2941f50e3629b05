"""Calibration / evaluation / training data: npz files or bundled sklearn sets.

The held-out split is fixed (``SPLIT_SEED``), independent of the run's seed, so results
from different seeds are comparable and a bundled teacher never trains on the eval rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.compression.errors import MissingInputError

SPLIT_SEED = 0
BUNDLED = ("digits", "breast_cancer", "iris", "wine")


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.name, self.x[idx], None if self.y is None else self.y[idx])


@dataclass(frozen=True)
class Splits:
    train: Dataset
    calib: Dataset
    eval: Dataset


def _bundled(name: str) -> Dataset:
    import sklearn.datasets as skd

    loader = {
        "digits": skd.load_digits,
        "breast_cancer": skd.load_breast_cancer,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
    }[name]
    bunch = loader()
    x = np.asarray(bunch.data, dtype=np.float32)
    # digits: pixels 0..16 -> 0..1; others: fixed per-feature standardisation (part of the set's definition)
    x = x / 16.0 if name == "digits" else (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    return Dataset(name, x.astype(np.float32), np.asarray(bunch.target, dtype=np.int64))


def load_data(spec: str | Path) -> Dataset:
    """``spec`` is a bundled name (digits, breast_cancer, iris, wine) or an npz with ``x`` and optional ``y``."""
    s = str(spec)
    if s in BUNDLED:
        return _bundled(s)
    path = Path(s)
    if not path.is_file():
        raise MissingInputError(f"data {s!r} is neither a bundled set ({', '.join(BUNDLED)}) nor an npz file")
    with np.load(path) as z:
        if "x" not in z:
            raise MissingInputError(f"{path} has no array named 'x'")
        x = np.asarray(z["x"], dtype=np.float32)
        y = np.asarray(z["y"]).astype(np.int64) if "y" in z else None
    return Dataset(path.stem, x, y)


def split(ds: Dataset, *, eval_fraction: float = 0.25, calib_size: int = 256) -> Splits:
    """Deterministic train/calib/eval split; calib is a slice of train (calibration needs no labels)."""
    n = len(ds)
    if n < 8:
        raise MissingInputError(f"data set {ds.name!r} has {n} rows; need at least 8")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_eval = max(1, round(n * eval_fraction))
    eval_idx, train_idx = perm[:n_eval], perm[n_eval:]
    return Splits(
        train=ds.subset(train_idx),
        calib=ds.subset(train_idx[:calib_size]),
        eval=ds.subset(eval_idx),
    )


def fit_shape(x: np.ndarray, sample_shape: tuple[int, ...]) -> np.ndarray:
    """Reshape rows to the model's per-sample input shape when the element counts agree."""
    if tuple(x.shape[1:]) == tuple(sample_shape):
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(sample_shape)):
        return x.reshape((x.shape[0], *sample_shape))
    raise MissingInputError(f"data rows of shape {tuple(x.shape[1:])} do not fit model input {tuple(sample_shape)}")
