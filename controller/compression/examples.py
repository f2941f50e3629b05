"""Bundled example teachers, trained on the fly on sklearn data (seconds on a laptop CPU).

Each function is a PyTorch model spec usable as ``controller.compression.examples:digits_mlp``.
Models train only on the train split (``data.split``), so the eval split stays held out.
Results are cached per process; passes clone before they change anything.
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

from controller.compression.data import load_data, split


def _mlp(sizes: list[int]) -> Any:
    import torch.nn as nn

    layers: list[Any] = []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def _fit(model: Any, data: str, *, epochs: int, shape: tuple[int, ...] | None = None, lr: float = 1e-3) -> Any:
    from controller.compression import torch_utils as tu

    s = split(load_data(data))
    x = s.train.x if shape is None else s.train.x.reshape((-1, *shape))
    assert s.train.y is not None
    tu.seed_all(0)
    return tu.train(model, x, s.train.y, epochs=epochs, lr=lr, seed=0)


@cache
def digits_mlp() -> Any:
    """64 -> 256 -> 256 -> 10 MLP on 8x8 digits (about 85 k parameters)."""
    import torch

    torch.manual_seed(0)
    return _fit(_mlp([64, 256, 256, 10]), "digits", epochs=40)


@cache
def digits_wide_mlp() -> Any:
    """64 -> 1024 -> 1024 -> 10: large enough that int8 kernel speed, not call overhead, shows."""
    import torch

    torch.manual_seed(0)
    return _fit(_mlp([64, 1024, 1024, 10]), "digits", epochs=15)


@cache
def digits_cnn() -> Any:
    """Small CNN on the 8x8 digit images (input 1x8x8)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    model = _fit(model, "digits", epochs=30, shape=(1, 8, 8))
    model.input_shape = (1, 8, 8)  # read by the search: the data set's rows are flat
    return model


@cache
def breast_cancer_mlp() -> Any:
    """30 -> 128 -> 128 -> 2 MLP on the (standardised) breast cancer set."""
    import torch

    torch.manual_seed(0)
    return _fit(_mlp([30, 128, 128, 2]), "breast_cancer", epochs=40)


EXAMPLES = {
    "digits_mlp": ("digits", (64,)),
    "digits_cnn": ("digits", (1, 8, 8)),
    "breast_cancer_mlp": ("breast_cancer", (30,)),
    "digits_wide_mlp": ("digits", (64,)),
}
