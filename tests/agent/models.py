"""Tiny real model files for agent tests, built in-process.

ONNX: a two-layer MLP made with ``onnx.helper`` (milliseconds to build).
LiteRT: the full-integer digits model from simulators/examples if present,
otherwise a tiny Keras model converted with ``tf.lite.TFLiteConverter``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_IN, N_HIDDEN, N_OUT = 8, 16, 4
EXAMPLES = Path(__file__).resolve().parents[2] / "simulators" / "examples"


def onnx_mlp(seed: int, n_in: int = N_IN) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(n_in, N_HIDDEN)).astype(np.float32)
    b1 = rng.normal(size=(N_HIDDEN,)).astype(np.float32)
    w2 = rng.normal(size=(N_HIDDEN, N_OUT)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"mlp{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N_OUT])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tflite_int8(tmp: Path) -> tuple[bytes, np.ndarray]:
    """(model bytes, sample inputs as float32)."""
    example = EXAMPLES / "digits_mlp_int8.tflite"
    samples = EXAMPLES / "digits_samples.npz"
    if example.exists() and samples.exists():
        return example.read_bytes(), np.load(samples)["x"].astype(np.float32)
    return _convert_keras_int8(tmp)


def _convert_keras_int8(tmp: Path) -> tuple[bytes, np.ndarray]:  # pragma: no cover - fallback path
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((32, N_IN), dtype=np.float32)
    model = tf.keras.Sequential(
        [tf.keras.Input((N_IN,)), tf.keras.layers.Dense(N_HIDDEN, activation="relu"), tf.keras.layers.Dense(N_OUT)]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert()), x[:8]


def wide_mlp(n_in: int, hidden: int, n_out: int = N_OUT, *, input_name: str = "x", seed: int = 3) -> bytes:
    """MatMul-Relu-MatMul with random float32 weights: large, and zstd cannot shrink it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [input_name, "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "wide",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_out])],
        [
            numpy_helper.from_array(rng.normal(size=(n_in, hidden)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(size=(hidden, n_out)).astype(np.float32), "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())
