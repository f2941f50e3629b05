"""Model runtimes behind one small interface: ``Model.run(x) -> y``.

Everything a call needs (input/output names, dtypes, quantization params) is
resolved once at load time, so the per-inference path is a dtype check and
the runtime call.  :func:`map_runtime_error` is the single place where
onnxruntime and LiteRT exceptions become :class:`ModelLoadError`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.errors import ModelLoadError
from shared.messages import Runtime


class Model(Protocol):
    runtime: Runtime
    input_dtype: np.dtype[Any]
    input_shape: tuple[int | None, ...]

    def run(self, x: np.ndarray) -> np.ndarray: ...


def _runtime_exception_types() -> tuple[type[BaseException], ...]:
    """Everything the runtimes raise for a bad model or a bad input."""
    types: list[type[BaseException]] = [RuntimeError, ValueError, TypeError, OSError, IndexError, KeyError]
    try:
        state = importlib.import_module("onnxruntime.capi.onnxruntime_pybind11_state")
    except ImportError:  # pragma: no cover - onnxruntime is a base dependency
        return tuple(types)
    for name in dir(state):
        obj = getattr(state, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            types.append(obj)
    return tuple(types)


RUNTIME_ERRORS = _runtime_exception_types()


def map_runtime_error(exc: BaseException, what: str = "run") -> ModelLoadError:
    """The one translation of a runtime failure into the project's hierarchy."""
    if isinstance(exc, ModelLoadError):
        return exc
    return ModelLoadError(f"{what}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def mapped_runtime_errors(what: str) -> Iterator[None]:
    try:
        yield
    except RUNTIME_ERRORS as exc:
        raise map_runtime_error(exc, what) from exc


class OnnxModel:
    runtime: Runtime = "onnxruntime"

    def __init__(self, path: Path, *, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        with mapped_runtime_errors(f"load {path.name}"):
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            inp = self._session.get_inputs()[0]
            self._input_name = inp.name
            self._output_names = [self._session.get_outputs()[0].name]
        self.input_dtype = np.dtype(_ORT_TYPES.get(inp.type, "float32"))
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self._run = _fast_run(self._session)

    def run(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input_dtype
        if x.dtype is not dtype and x.dtype != dtype:  # identity first: builtin dtypes are singletons
            x = x.astype(dtype)
        out: np.ndarray = self._run(self._output_names, {self._input_name: x}, None)[0]
        return out


def _fast_run(session: Any) -> Any:
    """The C++ session's ``run``, skipping the Python wrapper's per-call checks.

    ``InferenceSession.run`` validates input names, OrtValue ownership and
    graph-capture options on every call, and retries on execution-provider
    failure; with pre-resolved names, numpy inputs and the CPU provider none
    of that can trigger, and skipping it is most of the agent's overhead
    budget (<= 1.05x a bare ``session.run``).  Falls back to the public
    method if a future onnxruntime renames the attribute.
    """
    inner = getattr(session, "_sess", None)
    run = getattr(inner, "run", None)
    if callable(run):
        return run
    return lambda names, feed, options: session.run(names, feed, options)


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def _litert_interpreter_class() -> Any:
    """Prefer ai-edge-litert (the maintained package), fall back to tflite-runtime."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    raise ModelLoadError("litert: neither ai-edge-litert nor tflite-runtime is installed")


class LiteRTModel:
    """A LiteRT interpreter; full-integer models get float in, float out via their quant params."""

    runtime: Runtime = "litert"

    def __init__(self, path: Path, *, intra_op_threads: int = 1) -> None:
        interpreter_cls = _litert_interpreter_class()
        with mapped_runtime_errors(f"load {path.name}"):
            self._interp = interpreter_cls(model_path=str(path), num_threads=intra_op_threads)
            self._interp.allocate_tensors()
            inp = self._interp.get_input_details()[0]
            out = self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_shape: tuple[int | None, ...] = tuple(int(d) for d in inp["shape"])
        self._in_scale, self._in_zero = _quant(inp)
        self._out_scale, self._out_zero = _quant(out)
        self._in_limits = _int_limits(self.input_dtype) if self._in_scale else None
        self._set, self._invoke, self._get = self._interp.set_tensor, self._interp.invoke, self._interp.get_tensor

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._in_limits is not None and x.dtype.kind == "f":
            lo, hi = self._in_limits
            x = np.clip(np.round(x / self._in_scale + self._in_zero), lo, hi).astype(self.input_dtype)
        elif x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        if x.shape != self.input_shape:
            self._resize(x.shape)
        self._set(self._in_index, x)
        self._invoke()
        y: np.ndarray = self._get(self._out_index)
        if self._out_scale:
            return (y.astype(np.float32) - self._out_zero) * np.float32(self._out_scale)
        return y.copy()

    def _resize(self, shape: tuple[int, ...]) -> None:
        """Batch size differs from the converted one: resize once, keep it."""
        self._interp.resize_tensor_input(self._in_index, list(shape))
        self._interp.allocate_tensors()
        self.input_shape = tuple(shape)


def _quant(details: dict[str, Any]) -> tuple[float, int]:
    scale, zero = details.get("quantization", (0.0, 0))
    return float(scale), int(zero)


def _int_limits(dtype: np.dtype[Any]) -> tuple[int, int] | None:
    if dtype.kind not in "iu":
        return None
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def load_model(path: Path, runtime: Runtime, *, intra_op_threads: int = 1) -> Model:
    """Load ``path`` with ``runtime``; any failure is a ModelLoadError."""
    if runtime == "onnxruntime":
        return OnnxModel(path, intra_op_threads=intra_op_threads)
    if runtime == "litert":
        return LiteRTModel(path, intra_op_threads=intra_op_threads)
    raise ModelLoadError(f"unknown runtime {runtime!r}")


__all__ = ["RUNTIME_ERRORS", "LiteRTModel", "Model", "OnnxModel", "load_model", "map_runtime_error"]
