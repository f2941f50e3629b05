"""A small ONNX -> TensorFlow graph translator, enough to feed ``tf.lite.TFLiteConverter``.

onnx2tf is not an option (it pins numpy/TF versions that break this environment), and going
through PyTorch would leave ONNX-only uploads without a LiteRT path.  The translator walks the
ONNX graph once inside a ``tf.function`` with a fixed batch of 1 (LiteRT artifacts are
single-sample), mapping each node to TF ops.  Sub-graphs whose inputs are all constants (shape
arithmetic from the TorchScript exporter) are folded eagerly.  ONNX is NCHW and TF's CPU
convolutions are NHWC, so each Conv/pool is wrapped in transposes; the converter's optimiser
cancels back-to-back pairs.  Anything outside ``HANDLERS`` raises :class:`UnsupportedOpError`
naming the op and the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from controller.compression.errors import UnsupportedOpError

Value = Any  # np.ndarray (constant) or tf.Tensor
Handler = Callable[[Any, list[Value], dict[str, Any]], list[Value]]
HANDLERS: dict[str, Handler] = {}


def _op(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


def _tf() -> Any:
    import tensorflow as tf

    return tf


def _shape(x: Value) -> list[int]:
    return list(x.shape) if isinstance(x, np.ndarray) else [int(d) for d in x.shape]


@_op("Identity", "Dropout")
def _identity(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    return [i[0]]


_UNARY = {
    "Relu": "nn.relu", "Sigmoid": "math.sigmoid", "Tanh": "math.tanh", "Exp": "math.exp", "Sqrt": "math.sqrt",
    "Neg": "math.negative", "Abs": "math.abs", "Erf": "math.erf", "Log": "math.log", "Reciprocal": "math.reciprocal",
}  # fmt: skip
_BINARY = {
    "Add": "math.add", "Sub": "math.subtract", "Mul": "math.multiply", "Div": "math.divide", "Pow": "math.pow",
    "Max": "math.maximum", "Min": "math.minimum",
}  # fmt: skip


def _resolve(path: str) -> Any:
    obj = _tf()
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _unary(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    return [_resolve(_UNARY[node.op_type])(i[0])]


def _binary(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    x, y = i
    tf = _tf()
    dt = x.dtype if not isinstance(x, np.ndarray) else (y.dtype if not isinstance(y, np.ndarray) else None)
    if dt is not None:
        x, y = tf.cast(x, dt), tf.cast(y, dt)
    return [_resolve(_BINARY[node.op_type])(x, y)]


for _n in _UNARY:
    HANDLERS[_n] = _unary
for _n in _BINARY:
    HANDLERS[_n] = _binary


@_op("LeakyRelu")
def _leaky(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    return [_tf().nn.leaky_relu(i[0], alpha=a.get("alpha", 0.01))]


@_op("Clip")
def _clip(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    tf = _tf()
    lo = i[1] if len(i) > 1 and i[1] is not None else a.get("min", -3.4e38)
    hi = i[2] if len(i) > 2 and i[2] is not None else a.get("max", 3.4e38)
    return [tf.clip_by_value(i[0], float(np.asarray(lo)), float(np.asarray(hi)))]


@_op("Softmax")
def _softmax(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    return [_tf().nn.softmax(i[0], axis=a.get("axis", -1))]


@_op("Gemm")
def _gemm(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    tf = _tf()
    x, w = i[0], i[1]
    if a.get("transA", 0):
        x = tf.transpose(x)
    if a.get("transB", 0):
        w = np.ascontiguousarray(np.transpose(w)) if isinstance(w, np.ndarray) else tf.transpose(w)
    y = tf.linalg.matmul(x, w) * a.get("alpha", 1.0) if a.get("alpha", 1.0) != 1.0 else tf.linalg.matmul(x, w)
    if len(i) > 2 and i[2] is not None:
        c = i[2] * a.get("beta", 1.0) if a.get("beta", 1.0) != 1.0 else i[2]
        y = y + c
    return [y]


@_op("MatMul")
def _matmul(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    return [_tf().linalg.matmul(i[0], i[1])]


@_op("Flatten")
def _flatten(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    shape = _shape(i[0])
    axis = a.get("axis", 1) % max(len(shape), 1) if shape else 0
    lead = int(np.prod(shape[:axis])) if axis else 1
    return [_tf().reshape(i[0], [lead, int(np.prod(shape[axis:]))])]


@_op("Reshape")
def _reshape(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    target = [int(v) for v in np.asarray(i[1]).tolist()]
    if not a.get("allowzero", 0):
        src = _shape(i[0])
        target = [src[k] if v == 0 else v for k, v in enumerate(target)]
    return [_tf().reshape(i[0], target)]


@_op("Transpose")
def _transpose(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    perm = a.get("perm") or list(reversed(range(len(_shape(i[0])))))
    return [_tf().transpose(i[0], perm)]


@_op("Shape")
def _shape_op(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    s = np.asarray(_shape(i[0]), dtype=np.int64)
    return [s[a.get("start", 0) : a.get("end", len(s))]]


@_op("Cast")
def _cast(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    from onnx import helper

    np_dtype = helper.tensor_dtype_to_np_dtype(a["to"])
    if isinstance(i[0], np.ndarray):
        return [i[0].astype(np_dtype)]
    return [_tf().cast(i[0], _tf().as_dtype(np_dtype))]


@_op("Unsqueeze")
def _unsqueeze(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    axes: list[int] = [int(v) for v in (a["axes"] if "axes" in a else np.asarray(i[1]).tolist())]
    x = i[0]
    rank = len(_shape(x)) + len(axes)
    for ax in sorted(int(v) % rank for v in axes):
        x = np.expand_dims(x, ax) if isinstance(x, np.ndarray) else _tf().expand_dims(x, ax)
    return [x]


@_op("Squeeze")
def _squeeze(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    axes = a.get("axes") if "axes" in a else (np.asarray(i[1]).tolist() if len(i) > 1 else None)
    if isinstance(i[0], np.ndarray):
        return [np.squeeze(i[0], axis=tuple(axes) if axes is not None else None)]
    return [_tf().squeeze(i[0], axis=axes)]


@_op("Concat")
def _concat(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    if all(isinstance(v, np.ndarray) for v in i):
        return [np.concatenate(i, axis=a["axis"])]
    return [_tf().concat(i, axis=a["axis"])]


@_op("Gather")
def _gather(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    if all(isinstance(v, np.ndarray) for v in i):
        return [np.take(i[0], i[1], axis=a.get("axis", 0))]
    return [_tf().gather(i[0], i[1], axis=a.get("axis", 0))]


@_op("Slice")
def _slice(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    shape = _shape(i[0])
    starts, ends = np.asarray(i[1]).tolist(), np.asarray(i[2]).tolist()
    axes = np.asarray(i[3]).tolist() if len(i) > 3 and i[3] is not None else list(range(len(starts)))
    steps = np.asarray(i[4]).tolist() if len(i) > 4 and i[4] is not None else [1] * len(starts)
    sl = [slice(None)] * len(shape)
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        dim = shape[ax]
        sl[ax] = slice(max(min(s, dim), -dim), max(min(e, dim), -dim - 1), st)
    return [i[0][tuple(sl)]]


@_op("BatchNormalization")
def _batchnorm(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    x, scale, bias, mean, var = i[:5]
    mul = np.asarray(scale) / np.sqrt(np.asarray(var) + a.get("epsilon", 1e-5))
    add = np.asarray(bias) - np.asarray(mean) * mul
    bshape = [1, -1] + [1] * (len(_shape(x)) - 2)
    return [x * mul.reshape(bshape).astype(np.float32) + add.reshape(bshape).astype(np.float32)]


@_op("ReduceMean")
def _reduce_mean(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    axes = a.get("axes") if "axes" in a else (np.asarray(i[1]).tolist() if len(i) > 1 else None)
    return [_tf().reduce_mean(i[0], axis=axes, keepdims=bool(a.get("keepdims", 1)))]


@_op("LayerNormalization")
def _layernorm(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    tf = _tf()
    x = i[0]
    rank = len(_shape(x))
    axes = list(range(a.get("axis", -1) % rank, rank))
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    var = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=axes, keepdims=True)
    y = (x - mean) * tf.math.rsqrt(var + a.get("epsilon", 1e-5)) * i[1]
    return [y + i[2] if len(i) > 2 and i[2] is not None else y]


def _nhwc(x: Value) -> Value:
    return _tf().transpose(x, [0, 2, 3, 1])


def _nchw(x: Value) -> Value:
    return _tf().transpose(x, [0, 3, 1, 2])


def _explicit_pads(node: Any, a: dict[str, Any], allow: bool) -> list[int]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise UnsupportedOpError(
            node.op_type, node.name, "auto_pad SAME_* is not handled; re-export with explicit pads"
        )
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if any(pads) and not allow:
        raise UnsupportedOpError(node.op_type, node.name, "padded pooling is not handled")
    if a.get("ceil_mode", 0):
        raise UnsupportedOpError(node.op_type, node.name, "ceil_mode=1 is not handled")
    return pads


@_op("Conv")
def _conv(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    tf = _tf()
    x, w = i[0], i[1]
    if len(_shape(x)) != 4 or not isinstance(w, np.ndarray):
        raise UnsupportedOpError("Conv", node.name, "only 2-D convolutions with constant weights are handled")
    pads = _explicit_pads(node, a, allow=True)
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    group = a.get("group", 1)
    c_out, c_in_g, kh, kw = w.shape
    y = _nhwc(x)
    if any(pads):
        y = tf.pad(y, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
    if group == 1:
        y = tf.nn.conv2d(
            y, np.transpose(w, (2, 3, 1, 0)), strides=[1, *strides, 1], padding="VALID", dilations=[1, *dil, 1]
        )
    elif c_in_g == 1 and group == _shape(x)[1]:
        mult = c_out // group
        f = np.transpose(w.reshape(group, mult, kh, kw), (2, 3, 0, 1))
        y = tf.nn.depthwise_conv2d(y, f, strides=[1, *strides, 1], padding="VALID", dilations=dil)
    else:
        raise UnsupportedOpError("Conv", node.name, f"grouped convolution (group={group}) is not handled")
    if len(i) > 2 and i[2] is not None:
        y = y + i[2]
    return [_nchw(y)]


@_op("MaxPool", "AveragePool")
def _pool(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    tf = _tf()
    _explicit_pads(node, a, allow=False)
    k = list(a["kernel_shape"])
    s = list(a.get("strides", k))
    fn = tf.nn.max_pool2d if node.op_type == "MaxPool" else tf.nn.avg_pool2d
    return [_nchw(fn(_nhwc(i[0]), ksize=k, strides=s, padding="VALID"))]


@_op("GlobalAveragePool")
def _gap(node: Any, i: list[Value], a: dict[str, Any]) -> list[Value]:
    return [_tf().reduce_mean(i[0], axis=[2, 3], keepdims=True)]


def supported_ops() -> list[str]:
    return sorted({*HANDLERS, "Constant"})


def check_convertible(model: Any) -> None:
    for n in model.graph.node:
        if (n.op_type not in HANDLERS and n.op_type != "Constant") or n.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(
                n.op_type,
                n.name or "(unnamed)",
                f"no ONNX->TFLite rule; handled ops: {', '.join(supported_ops())}",
            )


def build_graph_fn(model: Any) -> Callable[[Any], Any]:
    """Return ``f(x) -> y`` evaluating the (single-input, single-output) ONNX graph with TF ops."""
    from onnx import helper, numpy_helper

    check_convertible(model)
    tf = _tf()
    consts = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    init_names = set(consts)
    in_name = next(i.name for i in model.graph.input if i.name not in init_names)
    out_name = model.graph.output[0].name

    def f(x: Any) -> Any:
        env: dict[str, Value] = dict(consts)
        env[in_name] = x
        for node in model.graph.node:
            attrs = {at.name: helper.get_attribute_value(at) for at in node.attribute}
            if node.op_type == "Constant":
                env[node.output[0]] = numpy_helper.to_array(attrs["value"])
                continue
            ins = [env[n] if n else None for n in node.input]
            handler = HANDLERS[node.op_type]
            try:
                if all(v is None or isinstance(v, np.ndarray) for v in ins):
                    with tf.init_scope():  # constant sub-graph: fold eagerly
                        outs = [np.asarray(o) for o in handler(node, ins, attrs)]
                else:
                    outs = handler(node, ins, attrs)
            except UnsupportedOpError:
                raise
            except Exception as e:
                raise UnsupportedOpError(node.op_type, node.name, f"translation failed: {e}") from e
            for name, val in zip(node.output, outs, strict=False):
                env[name] = val
        return env[out_name]

    return f
