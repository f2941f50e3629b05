"""Small ONNX graph helpers: op checks, input shapes, Gemm rewrite, fp16 weight storage."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from controller.compression.errors import MissingInputError, UnsupportedOpError

#: Operator domains onnxruntime's CPU provider implements; anything else is a custom op.
KNOWN_DOMAINS = {"", "ai.onnx", "com.microsoft", "ai.onnx.ml"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError / google.protobuf errors
        raise MissingInputError(f"{path} is not a readable ONNX model: {e}") from e


def check_supported(model: Any) -> None:
    """Refuse custom-domain ops up front, naming op and node, instead of failing deep in a runtime."""
    import onnxruntime as ort

    for node in model.graph.node:
        if node.domain not in KNOWN_DOMAINS:
            raise UnsupportedOpError(
                f"{node.domain}::{node.op_type}",
                node.name or "(unnamed)",
                "custom-domain operator; onnxruntime has no kernel for it",
            )
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        msg = str(e)
        node = next((n for n in model.graph.node if n.op_type in msg), None)
        if node is not None:
            raise UnsupportedOpError(node.op_type, node.name, msg.splitlines()[0][:300]) from e
        raise MissingInputError(f"onnxruntime cannot load the model: {msg[:300]}") from e


def input_info(model: Any) -> tuple[str, tuple[int, ...]]:
    """Name and per-sample shape of the single model input (dims after batch must be fixed)."""
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise MissingInputError(f"model has {len(inputs)} inputs; the compression engine handles one")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.dim_value > 0 else -1 for d in dims[1:])
    return inputs[0].name, shape


def gemm_to_matmul(model: Any) -> Any:
    """Rewrite ``Gemm(A, W, b)`` with a constant W as ``MatMul + Add`` (dynamic int8 covers MatMul only)."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    made: set[str] = set()
    nodes = []
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (
            n.op_type != "Gemm"
            or n.input[1] not in inits
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            nodes.append(n)
            continue
        wname = n.input[1] + ("_mmT" if attrs.get("transB", 0) else "_mm")
        if wname not in made:  # a weight shared by several Gemms is rewritten once
            w = numpy_helper.to_array(inits[n.input[1]])
            if attrs.get("transB", 0):
                w = np.ascontiguousarray(w.T)
            model.graph.initializer.append(numpy_helper.from_array(w, wname))
            made.add(wname)
        has_bias = len(n.input) > 2 and n.input[2]
        mm_out = n.output[0] + "_mm" if has_bias else n.output[0]
        nodes.append(helper.make_node("MatMul", [n.input[0], wname], [mm_out], name=n.name + "_MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]], name=n.name + "_Add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused_initializers(model)
    onnx.checker.check_model(model)
    return model


def to_fp16_storage(model: Any, min_elements: int = 16) -> Any:
    """Store float32 weights as float16 and ``Cast`` them back to float32 at load.

    Halves the artifact; compute stays fp32 because onnxruntime's CPU provider has few fp16
    kernels (a device with fp16 units would drop the Casts).  Graph I/O keeps float32.
    """
    from onnx import TensorProto, helper, numpy_helper

    cast_nodes = []
    new_inits = []
    for init in list(model.graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_elements:
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16")
        new_inits.append(half)
        model.graph.initializer.remove(init)
        cast_nodes.append(
            helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "_cast")
        )
    model.graph.initializer.extend(new_inits)
    # old exporters also list initializers as graph inputs; a Cast now produces those names
    cast_outputs = {n.output[0] for n in cast_nodes}
    keep_inputs = [i for i in model.graph.input if i.name not in cast_outputs]
    del model.graph.input[:]
    model.graph.input.extend(keep_inputs)
    nodes = cast_nodes + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _drop_unused_initializers(model: Any) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def weight_count(model: Any) -> int:
    from onnx import numpy_helper

    return int(sum(numpy_helper.to_array(i).size for i in model.graph.initializer))
