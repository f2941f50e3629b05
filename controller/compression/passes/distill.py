"""Knowledge distillation and a small architecture search (PyTorch teacher + labels required).

* ``distillation``: trains an MLP student (flattened input) on the Hinton et al. (2015) loss:
  soft targets at temperature T weighted by T^2, plus hard labels (``torch_utils.train``).
* ``architecture_search``: tries student widths/depths from small to large under a parameter
  cap derived from the profile's size budget, distils each, and keeps the smallest whose
  validation accuracy stays within the budget of the teacher's.  The validation rows are carved
  out of the training split, so the eval split stays untouched for the final measurement.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from pydantic import Field

from controller.compression.errors import MissingInputError, NotApplicableError
from controller.compression.passes.base import ModelState, Pass, PassConfig, PassContext, register


def make_student(
    sample_shape: tuple[int, ...], hidden: list[int], n_out: int, conv_channels: list[int] | None = None
) -> Any:
    """MLP on the flattened input, or - with ``conv_channels`` and a (C, H, W) input - 3x3 convs
    (ReLU, one 2x2 max-pool after the last) followed by the MLP head."""
    import torch.nn as nn

    if conv_channels and len(sample_shape) != 3:
        raise NotApplicableError(f"a convolutional student needs (C, H, W) input, not {sample_shape}")
    layers: list[Any] = []
    if conv_channels:
        c, h, w = sample_shape
        for ch in conv_channels:
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU()]
            c = ch
        if h >= 4 and w >= 4:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        prev = c * h * w
    else:
        prev = int(np.prod(sample_shape))
    layers.append(nn.Flatten())
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers)


def _out_dim(teacher: Any, sample_shape: tuple[int, ...]) -> int:
    import torch

    with torch.no_grad():
        return int(teacher.eval()(torch.zeros((1, *sample_shape))).shape[-1])


class DistillationConfig(PassConfig):
    hidden: list[int] = Field(default_factory=lambda: [32])
    #: Conv channels of a convolutional student (image inputs only); empty = MLP student.
    conv_channels: list[int] = Field(default_factory=list)
    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.7, ge=0, le=1)
    epochs: int = Field(default=60, ge=1)
    lr: float = 2e-3


def _distil(
    teacher: Any, hidden: list[int], x: np.ndarray, y: np.ndarray, ctx: PassContext, cfg: DistillationConfig
) -> Any:
    import torch

    from controller.compression import torch_utils as tu

    torch.manual_seed(ctx.seed)
    student = make_student(ctx.sample_shape, hidden, _out_dim(teacher, ctx.sample_shape), cfg.conv_channels)
    return tu.train(
        student,
        x,
        y,
        epochs=cfg.epochs,
        lr=cfg.lr,
        seed=ctx.seed,
        teacher=teacher,
        temperature=cfg.temperature,
        alpha=cfg.alpha,
    )


@register
class Distillation(Pass):
    name = "distillation"
    Config = DistillationConfig
    requires = frozenset({"onnx", "torch", "labels"})

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        from controller.compression import torch_utils as tu
        from controller.compression.data import fit_shape

        cfg: DistillationConfig = self.config  # type: ignore[assignment]
        assert ctx.data.train.y is not None
        x = fit_shape(ctx.data.train.x, ctx.sample_shape)
        student = _distil(state.torch_model, list(cfg.hidden), x, ctx.data.train.y, ctx, cfg)
        path = tu.export_onnx(student, ctx.sample_shape, ctx.new_path("student"))
        info = {
            "params": tu.n_params(student),
            "teacher_params": tu.n_params(state.torch_model),
            "student_hidden": list(cfg.hidden),
            "student_conv": list(cfg.conv_channels),
        }
        ctx.log(f"distilled student {cfg.hidden}: {info['params']} params (teacher {info['teacher_params']})")
        return state.evolve(onnx_path=path, torch_model=student, info=info)


class ArchitectureSearchConfig(PassConfig):
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    depths: list[int] = Field(default_factory=lambda: [1, 2])
    #: Parameter cap (the search derives it from max_artifact_bytes and bytes per weight).
    max_params: int | None = None
    #: Allowed validation-accuracy drop vs the teacher; defaults to half the profile budget,
    #: leaving the other half to quantization.
    max_drop_pt: float | None = None
    max_trials: int = Field(default=6, ge=1)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    distill: DistillationConfig = Field(default_factory=lambda: DistillationConfig())


@register
class ArchitectureSearch(Pass):
    name = "architecture_search"
    Config = ArchitectureSearchConfig
    requires = frozenset({"onnx", "torch", "labels"})

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        from controller.compression import torch_utils as tu
        from controller.compression.data import fit_shape

        cfg: ArchitectureSearchConfig = self.config  # type: ignore[assignment]
        assert ctx.data.train.y is not None
        x_all = fit_shape(ctx.data.train.x, ctx.sample_shape)
        y_all = ctx.data.train.y
        n_val = max(1, int(len(x_all) * cfg.val_fraction))
        x_tr, y_tr, x_val, y_val = x_all[n_val:], y_all[n_val:], x_all[:n_val], y_all[:n_val]
        teacher = state.torch_model
        n_in, n_out = int(np.prod(ctx.sample_shape)), _out_dim(teacher, ctx.sample_shape)
        budget = cfg.max_drop_pt if cfg.max_drop_pt is not None else (ctx.max_drop_pt or 1.0) / 2
        teacher_acc = tu.accuracy(teacher, x_val, y_val)

        def params(h: list[int]) -> int:
            dims = [n_in, *h, n_out]
            return sum(a * b + b for a, b in itertools.pairwise(dims))

        space = sorted(([w] * d for d in cfg.depths for w in cfg.widths), key=params)
        if cfg.max_params is not None:
            space = [h for h in space if params(h) <= cfg.max_params]
        if not space:
            raise MissingInputError(f"no student fits under {cfg.max_params} parameters")
        trials: list[dict[str, Any]] = []
        best = None
        for hidden in space[: cfg.max_trials]:
            student = _distil(teacher, hidden, x_tr, y_tr, ctx, cfg.distill)
            acc = tu.accuracy(student, x_val, y_val)
            trials.append({"hidden": hidden, "params": params(hidden), "val_accuracy": acc})
            ctx.log(f"architecture search: {hidden} -> {acc:.2f} % (teacher {teacher_acc:.2f} %)")
            if best is None or acc > best[1]:
                best = (student, acc, hidden)
            if teacher_acc - acc <= budget:
                best = (student, acc, hidden)
                break
        assert best is not None
        student, _, hidden = best
        path = tu.export_onnx(student, ctx.sample_shape, ctx.new_path("searched"))
        info = {
            "params": tu.n_params(student),
            "teacher_params": tu.n_params(teacher),
            "student_hidden": hidden,
            "search_trials": trials,
            "teacher_val_accuracy": teacher_acc,
        }
        return state.evolve(onnx_path=path, torch_model=student, info=info)
