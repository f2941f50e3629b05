"""The pass contract: a pydantic config and one ``run`` method (Olive's registry habit).

A pass takes a :class:`ModelState` and returns a new one.  What it needs is declared in
``requires`` so the search can skip passes the inputs cannot feed:

* ``"onnx"``  - an ONNX model (always present: the source or an export of the torch model)
* ``"torch"`` - a PyTorch ``nn.Module`` (pruning, distillation, architecture search)
* ``"labels"`` - labelled training data (fine-tuning, distillation)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from controller.compression.data import Splits
from controller.compression.errors import CompressionError, MissingInputError


class PassConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ModelState:
    """What flows between passes.  ``artifact`` is the file a device would run."""

    onnx_path: Path
    torch_model: Any | None = None
    tflite_path: Path | None = None
    precision: str = "fp32"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def artifact(self) -> Path:
        return self.tflite_path or self.onnx_path

    @property
    def runtime(self) -> str:
        return "litert" if self.tflite_path else "onnxruntime"

    def evolve(self, **changes: Any) -> ModelState:
        info = {**self.info, **changes.pop("info", {})}
        return replace(self, info=info, **changes)


@dataclass
class PassContext:
    """Everything a pass may read; passes write only under ``workdir``."""

    workdir: Path
    data: Splits
    sample_shape: tuple[int, ...]
    seed: int = 0
    #: Scores an ONNX file on the calibration split: accuracy (or fidelity) in percent.
    score: Callable[[Path], float] | None = None
    #: Score of the uploaded model with ``score`` (reference for accuracy budgets).
    reference_score: float | None = None
    #: Allowed drop for passes that adapt to a budget (mixed precision).
    max_drop_pt: float | None = None
    log: Callable[[str], None] = lambda _msg: None
    _counter: int = 0

    def new_path(self, stem: str, suffix: str = ".onnx") -> Path:
        self._counter += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir / f"{self._counter:03d}-{stem}{suffix}"


class Pass(ABC):
    name: ClassVar[str]
    Config: ClassVar[type[PassConfig]] = PassConfig
    requires: ClassVar[frozenset[str]] = frozenset({"onnx"})

    def __init__(self, config: PassConfig | dict[str, Any] | None = None) -> None:
        self.config = config if isinstance(config, PassConfig) else self.Config(**(config or {}))

    def check(self, state: ModelState, ctx: PassContext) -> None:
        if "torch" in self.requires and state.torch_model is None:
            raise MissingInputError(f"pass {self.name} needs a PyTorch model (give MODEL as module:function or .pt)")
        if "labels" in self.requires and ctx.data.train.y is None:
            raise MissingInputError(f"pass {self.name} needs labelled training data (npz with y)")
        if state.tflite_path is not None:
            raise CompressionError(f"pass {self.name} cannot run after the .tflite conversion")

    @abstractmethod
    def run(self, state: ModelState, ctx: PassContext) -> ModelState: ...

    def __call__(self, state: ModelState, ctx: PassContext) -> ModelState:
        self.check(state, ctx)
        return self.run(state, ctx)

    def describe(self) -> dict[str, Any]:
        return {"pass": self.name, "config": self.config.model_dump()}


REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    if cls.name in REGISTRY:
        raise ValueError(f"pass {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown pass {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
