"""Magnitude pruning with fine-tuning (PyTorch model + labelled data required).

* ``weight_pruning``: unstructured L1 magnitude pruning (Han et al. 2015).  ``scope="layer"``
  prunes each layer's connections to the same sparsity ("connection pruning"); ``"global"`` uses
  one threshold for the whole net.  The dense file keeps its size - the zeros pay off on the wire
  (zstd of the artifact) and compound with int8, where a zero weight stays exactly zero.
* ``structured_pruning``: removes whole neurons / conv channels ranked by the L1 norm of their
  weights and rebuilds a genuinely smaller dense ``nn.Sequential``.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import Field

from controller.compression.errors import NotApplicableError
from controller.compression.passes.base import ModelState, Pass, PassConfig, PassContext, register


def _prunable(model: Any) -> list[Any]:
    import torch.nn as nn

    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv1d)]


def _finetune(model: Any, ctx: PassContext, epochs: int, lr: float, after_step: Any = None) -> Any:
    from controller.compression import torch_utils as tu
    from controller.compression.data import fit_shape

    if epochs <= 0:
        return model
    x = fit_shape(ctx.data.train.x, ctx.sample_shape)
    assert ctx.data.train.y is not None
    return tu.train(model, x, ctx.data.train.y, epochs=epochs, lr=lr, seed=ctx.seed, after_step=after_step)


class WeightPruningConfig(PassConfig):
    sparsity: float = Field(default=0.8, ge=0.0, lt=1.0)
    scope: Literal["global", "layer"] = "layer"
    #: Prune in this many steps of rising sparsity, fine-tuning after each (gradual pruning).
    steps: int = Field(default=3, ge=1)
    finetune_epochs: int = Field(default=8, ge=0)
    lr: float = 5e-4


@register
class WeightPruning(Pass):
    name = "weight_pruning"
    Config = WeightPruningConfig
    requires = frozenset({"onnx", "torch", "labels"})

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        import torch

        from controller.compression import torch_utils as tu

        cfg: WeightPruningConfig = self.config  # type: ignore[assignment]
        model = tu.clone(state.torch_model)
        weights = [m.weight for m in _prunable(model)]
        masks: list[torch.Tensor] = [torch.ones_like(w) for w in weights]

        def apply() -> None:
            with torch.no_grad():
                for w, m in zip(weights, masks, strict=True):
                    w.mul_(m)

        for step in range(1, cfg.steps + 1):
            target = cfg.sparsity * step / cfg.steps
            with torch.no_grad():
                if cfg.scope == "global":
                    all_w = torch.cat([w.abs().flatten() for w in weights])
                    k = int(target * all_w.numel())
                    thr = all_w.kthvalue(k).values if k > 0 else all_w.min() - 1
                    masks = [(w.abs() > thr).float() for w in weights]
                else:
                    masks = []
                    for w in weights:
                        k = int(target * w.numel())
                        thr = w.abs().flatten().kthvalue(k).values if k > 0 else w.abs().min() - 1
                        masks.append((w.abs() > thr).float())
            apply()
            model = _finetune(model, ctx, cfg.finetune_epochs, cfg.lr, after_step=apply)
        apply()
        total = sum(w.numel() for w in weights)
        zeros = sum(int((w == 0).sum()) for w in weights)
        path = tu.export_onnx(model, ctx.sample_shape, ctx.new_path("pruned"))
        ctx.log(f"weight pruning: {zeros / total:.1%} of {total} weights are zero")
        return state.evolve(onnx_path=path, torch_model=model, info={"weight_sparsity": zeros / total})


class StructuredPruningConfig(PassConfig):
    #: Fraction of neurons / channels each hidden layer keeps.
    keep_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    finetune_epochs: int = Field(default=15, ge=0)
    lr: float = 1e-3


@register
class StructuredPruning(Pass):
    name = "structured_pruning"
    Config = StructuredPruningConfig
    requires = frozenset({"onnx", "torch", "labels"})

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        from controller.compression import torch_utils as tu

        cfg: StructuredPruningConfig = self.config  # type: ignore[assignment]
        model = tu.clone(state.torch_model)
        before = tu.n_params(model)
        shrink_sequential(model, cfg.keep_ratio, ctx.sample_shape)
        model = _finetune(model, ctx, cfg.finetune_epochs, cfg.lr)
        after = tu.n_params(model)
        ctx.log(f"structured pruning: {before} -> {after} parameters")
        path = tu.export_onnx(model, ctx.sample_shape, ctx.new_path("shrunk"))
        return state.evolve(onnx_path=path, torch_model=model, info={"params": after, "params_before": before})


def shrink_sequential(model: Any, keep_ratio: float, sample_shape: tuple[int, ...]) -> None:
    """Drop the weakest output units of every hidden Linear/Conv layer of an ``nn.Sequential``, in place."""
    import torch
    import torch.nn as nn

    if not isinstance(model, nn.Sequential):
        raise NotApplicableError("structured pruning supports nn.Sequential models (Linear/Conv2d chains)")
    allowed = (
        nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh,
        nn.Sigmoid, nn.GELU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity,
    )  # fmt: skip
    for m in model:
        if not isinstance(m, allowed):
            raise NotApplicableError(f"structured pruning cannot handle layer {type(m).__name__}")
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise NotApplicableError("structured pruning does not handle grouped convolutions")
    idx = [i for i, m in enumerate(model) if isinstance(m, nn.Linear | nn.Conv2d)]
    with torch.no_grad():
        for a, b in itertools.pairwise(idx):
            cur, nxt = model[a], model[b]
            assert isinstance(cur, nn.Linear | nn.Conv2d) and isinstance(nxt, nn.Linear | nn.Conv2d)
            n_out = int(cur.weight.shape[0])
            k = max(1, round(n_out * keep_ratio))
            if k >= n_out:
                continue
            score = cur.weight.abs().reshape(n_out, -1).sum(1)
            keep = torch.sort(torch.topk(score, k).indices).values
            model[a] = _slice_out(cur, keep)
            for j in range(a + 1, b):
                if isinstance(model[j], nn.BatchNorm1d | nn.BatchNorm2d):
                    model[j] = _slice_bn(model[j], keep)
            if isinstance(nxt, nn.Linear) and isinstance(cur, nn.Conv2d):
                spatial = nxt.in_features // n_out
                cols = (keep[:, None] * spatial + torch.arange(spatial)[None, :]).flatten()
            else:
                cols = keep
            model[b] = _slice_in(nxt, cols)
    # the rebuilt model must still run on the input shape
    model.eval()(torch.zeros((1, *sample_shape)))


def _slice_out(m: Any, keep: Any) -> Any:
    import torch.nn as nn

    new: nn.Linear | nn.Conv2d
    if isinstance(m, nn.Linear):
        new = nn.Linear(m.in_features, len(keep), bias=m.bias is not None)
    else:
        new = nn.Conv2d(
            m.in_channels, len(keep), m.kernel_size, m.stride, m.padding, m.dilation, bias=m.bias is not None
        )
    new.weight.data = m.weight.data[keep].clone()
    if m.bias is not None and new.bias is not None:  # new has a bias exactly when m has one
        new.bias.data = m.bias.data[keep].clone()
    return new


def _slice_in(m: Any, cols: Any) -> Any:
    import torch.nn as nn

    new: nn.Linear | nn.Conv2d
    if isinstance(m, nn.Linear):
        new = nn.Linear(len(cols), m.out_features, bias=m.bias is not None)
    else:
        new = nn.Conv2d(
            len(cols), m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, bias=m.bias is not None
        )
    new.weight.data = m.weight.data[:, cols].clone()
    if m.bias is not None and new.bias is not None:
        new.bias.data = m.bias.data.clone()
    return new


def _slice_bn(m: Any, keep: Any) -> Any:
    new = type(m)(len(keep), eps=m.eps, momentum=m.momentum, affine=m.affine)
    for name in ("weight", "bias"):
        if getattr(m, name) is not None:
            getattr(new, name).data = getattr(m, name).data[keep].clone()
    new.running_mean.data = m.running_mean.data[keep].clone()
    new.running_var.data = m.running_var.data[keep].clone()
    return new
