"""Check uploaded model files and compute self-test vectors with the runtime the device will use.

Foreign loader errors (onnx, onnxruntime, LiteRT) are translated to
:class:`ModelFileError` here and nowhere else.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np

from shared.messages import SelfTestVector

log = logging.getLogger("edgefleet.controller.modelfiles")

#: Bound on the floats a manifest carries for self-test (inputs + outputs), so
#: the signed DesiredState stays far below the codec's 256 KiB JSON limit.
MAX_SELF_TEST_FLOATS = 12_000
_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "int64": np.int64}


class ModelFileError(ValueError):
    """The upload is not a loadable model for the claimed runtime."""


def guess_runtime(data: bytes, filename: str = "") -> str:
    """``litert`` for a flatbuffer with the TFL3 identifier or a .tflite name, else ``onnxruntime``."""
    name = filename.lower()
    if data[4:8] == b"TFL3" or name.endswith(".tflite"):
        return "litert"
    if name.endswith(".onnx") or data[:1] == b"\x08":  # ONNX protobuf starts with field 1 (ir_version)
        return "onnxruntime"
    raise ModelFileError("cannot tell the runtime: expected an ONNX (.onnx) or LiteRT (.tflite) model")


class _Runner:
    input_shape: list[int]
    input_dtype: str
    quant: tuple[float, int] | None = None
    out_quant: tuple[float, int] | None = None

    def run(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        raise NotImplementedError


class _OnnxRunner(_Runner):
    def __init__(self, data: bytes) -> None:
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load_model_from_string(data)
            onnx.checker.check_model(model)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 3
            self.sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnx/ort raise many unrelated types; all mean "not a usable model"
            raise ModelFileError(f"not a loadable ONNX model: {_short(exc)}") from exc
        inp = self.sess.get_inputs()[0]
        self.name = inp.name
        self.input_shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        types = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int64)": "int64"}
        if inp.type not in types:
            raise ModelFileError(f"unsupported ONNX input type {inp.type}")
        self.input_dtype = types[inp.type]

    def run(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self.sess.run(None, {self.name: x})[0])


class _LiteRTRunner(_Runner):
    def __init__(self, data: bytes) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - controller extra installs it
            raise ModelFileError("LiteRT (ai-edge-litert) is not installed on the controller") from exc
        if data[4:8] != b"TFL3":
            raise ModelFileError("not a LiteRT flatbuffer (missing TFL3 identifier)")
        try:
            self.interp = Interpreter(model_content=data, num_threads=1)
            self.interp.allocate_tensors()
        except Exception as exc:  # LiteRT raises RuntimeError/ValueError with C++ messages
            raise ModelFileError(f"not a loadable LiteRT model: {_short(exc)}") from exc
        inp = self.interp.get_input_details()[0]
        self.inp = inp
        self.out = self.interp.get_output_details()[0]
        self.input_shape = [int(d) if d > 0 else 1 for d in inp["shape"]]
        dtype = np.dtype(inp["dtype"]).name
        if dtype not in _DTYPES:
            raise ModelFileError(f"unsupported LiteRT input type {dtype}")
        self.input_dtype = dtype
        scale, zero = inp.get("quantization", (0.0, 0))
        self.quant = (float(scale), int(zero)) if scale else None
        out_scale, out_zero = self.out.get("quantization", (0.0, 0))
        self.out_quant = (float(out_scale), int(out_zero)) if out_scale else None

    def run(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if list(x.shape) != list(self.inp["shape"]):
            self.interp.resize_tensor_input(self.inp["index"], list(x.shape))
            self.interp.allocate_tensors()
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = np.array(self.interp.get_tensor(self.out["index"]))
        if self.out_quant is not None:
            # Agents dequantize full-integer outputs (float out), so the expectation is in floats too.
            scale, zero = self.out_quant
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return y


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def load_runner(data: bytes, runtime: str) -> _Runner:
    if runtime == "onnxruntime":
        return _OnnxRunner(data)
    if runtime == "litert":
        return _LiteRTRunner(data)
    raise ModelFileError(f"unknown runtime {runtime!r} (expected onnxruntime or litert)")


def load_samples(data: bytes) -> np.ndarray[Any, Any]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if "x" not in npz:
                raise ModelFileError("samples npz has no array named 'x'")
            return np.asarray(npz["x"])
    except ModelFileError:
        raise
    except Exception as exc:  # zip/npy format errors
        raise ModelFileError(f"samples is not a readable .npz file: {_short(exc)}") from exc


def self_test_vectors(
    data: bytes, runtime: str, samples: np.ndarray[Any, Any] | None = None, *, count: int = 4, seed: int = 0
) -> list[SelfTestVector]:
    """Load the model (proving it is usable) and record its outputs for ``count`` inputs.

    Inputs are the first rows of ``samples`` or, without samples, seeded random
    inputs of the model's input shape (dynamic dimensions taken as 1).
    """
    runner = load_runner(data, runtime)
    shape = runner.input_shape
    rng = np.random.default_rng(seed)
    inputs: list[np.ndarray[Any, Any]] = []
    if samples is not None and len(samples):
        for row in samples[:count]:
            x = np.asarray(row)
            if list(x.shape) != shape[1:] and x.size == int(np.prod(shape[1:])):
                x = x.reshape(shape[1:])
            inputs.append(_to_input(x[None, ...], runner))
    else:
        for _ in range(count):
            if runner.input_dtype == "float32":
                inputs.append(rng.standard_normal(shape).astype(np.float32))
            else:
                info = np.iinfo(runner.input_dtype)
                lo, hi = max(int(info.min), -128), min(int(info.max), 127)
                inputs.append(rng.integers(lo, hi + 1, size=shape).astype(_DTYPES[runner.input_dtype]))
    vectors: list[SelfTestVector] = []
    budget = MAX_SELF_TEST_FLOATS
    for x in inputs:
        try:
            y = runner.run(x)
        except Exception as exc:  # runtime failure on a well-formed input: the model is unusable
            raise ModelFileError(f"model failed to run on input of shape {list(x.shape)}: {_short(exc)}") from exc
        need = x.size + y.size
        if need > budget:
            log.info("self-test: stopping at %d vectors (manifest size bound)", len(vectors))
            break
        budget -= need
        flat = y.reshape(-1).astype(np.float64)
        top1 = int(np.argmax(flat)) if y.ndim >= 1 and y.shape[-1] > 1 and y.size == y.shape[-1] else None
        # Another CPU's kernels may differ in the last float bits or by one quantization step.
        step = runner.out_quant[0] if runner.out_quant is not None else 0.0
        atol = max(1e-3, 1e-4 * float(np.max(np.abs(flat))) if flat.size else 0.0, 1.01 * step)
        vectors.append(
            SelfTestVector(
                input_shape=[int(d) for d in x.shape],
                input_dtype=runner.input_dtype,  # type: ignore[arg-type]
                data=[float(v) for v in x.reshape(-1)],
                expected=[float(v) for v in flat],
                expected_top1=top1,
                atol=atol,
            )
        )
    return vectors


def _to_input(x: np.ndarray[Any, Any], runner: _Runner) -> np.ndarray[Any, Any]:
    dtype = _DTYPES[runner.input_dtype]
    if runner.input_dtype != "float32" and x.dtype.kind == "f" and runner.quant is not None:
        scale, zero = runner.quant
        info = np.iinfo(runner.input_dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


__all__ = ["ModelFileError", "guess_runtime", "load_runner", "load_samples", "self_test_vectors"]
