"""PyTorch helpers for the training-based passes: loading, training, export.

Imported only inside passes (torch is heavy and optional for the controller).

A PyTorch model is given as either
  * ``package.module:function`` - a function returning an ``nn.Module`` (trained), or
  * a ``.pt``/``.pth`` file written with ``torch.save(module)`` (the whole module, not a
    state dict; loaded with ``weights_only=False``, so only load files you trust).

An optional ``input_shape`` attribute on the module gives the per-sample shape when it differs
from the data rows (e.g. ``(1, 8, 8)`` for a CNN fed flat 64-feature digits).
"""

from __future__ import annotations

import copy
import importlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from controller.compression.errors import MissingInputError


def is_torch_spec(spec: str) -> bool:
    return spec.endswith((".pt", ".pth")) or (":" in spec and not Path(spec).exists() and "/" not in spec)


def load_torch_model(spec: str) -> Any:
    import torch

    if spec.endswith((".pt", ".pth")):
        obj = torch.load(spec, weights_only=False, map_location="cpu")
    else:
        mod_name, _, fn_name = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise MissingInputError(f"cannot load PyTorch model spec {spec!r}: {e}") from e
        obj = fn()
    if not isinstance(obj, torch.nn.Module):
        raise MissingInputError(f"{spec!r} did not give a torch.nn.Module (got {type(obj).__name__})")
    return obj.eval()


def seed_all(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    torch.use_deterministic_algorithms(True, warn_only=True)


def n_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def n_nonzero(module: Any) -> int:
    return int(sum(int((p != 0).sum()) for p in module.parameters()))


def export_onnx(module: Any, sample_shape: tuple[int, ...], path: Path) -> Path:
    """Export with the TorchScript exporter (dynamo=False): robust for plain nets, dynamic batch."""
    import torch

    module = module.eval()
    dummy = torch.zeros((1, *sample_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=17,
        )
    return path


def train(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    teacher: Any | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    after_step: Callable[[], None] | None = None,
) -> Any:
    """Adam + cross-entropy; with ``teacher`` the Hinton et al. (2015) loss:

    ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)`` -
    the T^2 keeps the soft-target gradients on the same scale as the hard-label ones.
    ``after_step`` re-applies pruning masks so pruned weights stay zero while fine-tuning.
    """
    import torch

    # One thread: these nets are tiny, so threads only add contention (20x slower on a busy
    # 2-core box), and the result no longer depends on the machine's core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(
            module,
            x,
            y,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            teacher=teacher,
            temperature=temperature,
            alpha=alpha,
            after_step=after_step,
        )
    finally:
        torch.set_num_threads(threads)


def _train(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    teacher: Any | None,
    temperature: float,
    alpha: float,
    after_step: Callable[[], None] | None,
) -> Any:
    import torch
    import torch.nn.functional as F

    seed_all(seed)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    if teacher is not None:
        teacher = teacher.eval()
        with torch.no_grad():
            t_logits_all = teacher(xt)
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            idx = perm[i : i + batch_size]
            out = module(xt[idx])
            loss = F.cross_entropy(out, yt[idx])
            if teacher is not None:
                t = temperature
                soft = F.kl_div(
                    F.log_softmax(out / t, dim=1),
                    F.softmax(t_logits_all[idx] / t, dim=1),
                    reduction="batchmean",
                )
                loss = alpha * t * t * soft + (1 - alpha) * loss
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            opt.step()
            if after_step is not None:
                after_step()
    return module.eval()


def accuracy(module: Any, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        pred = module.eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).argmax(1).numpy()
    return float((pred == y).mean() * 100.0)


def clone(module: Any) -> Any:
    return copy.deepcopy(module)
