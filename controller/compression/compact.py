"""Lossless compaction of an ONNX artifact: the bytes a runtime does not need.

On small models the fixed per-node overhead - long tensor and node names written by exporters
and quantizers (``/layers/layers.0/Gemm_output_0_QuantizeLinear_Output``), doc strings, metadata,
producer strings, ``value_info`` from shape inference and one scale / zero-point initializer per
quantized tensor even when the values are identical - can be a fifth of the file.  Compaction

* renames every tensor and node to a short generated name, keeping the graph's input and output
  names (what callers feed and read) untouched;
* drops doc strings, ``metadata_props``, producer name/version, the graph name and ``value_info``;
* merges identical scalar initializers (same dtype, same bytes) into one.

Nothing that the runtime computes with changes: same ops, same attributes, same initializer
bytes, same topology.  :func:`compact_file` optionally verifies that on real rows (outputs must
be bit-identical) and keeps the original file if they are not.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_ALPHABET = string.ascii_letters + string.digits


def _short_names(taken: set[str]) -> Iterator[str]:
    """a, b, ..., Z, aa, ab, ...: never one of ``taken`` and never starting with a digit."""
    n = 0
    while True:
        i = n
        name = _ALPHABET[i % 52]
        i //= 52
        while i:
            i -= 1
            name += _ALPHABET[i % len(_ALPHABET)]
            i //= len(_ALPHABET)
        n += 1
        if name not in taken:
            yield name


def _has_subgraphs(graph: Any) -> bool:
    from onnx import AttributeProto

    return any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node for a in n.attribute)


def _strip_docs(graph: Any) -> None:
    from onnx import AttributeProto

    graph.doc_string = ""
    del graph.value_info[:]
    for vi in [*graph.input, *graph.output]:
        vi.doc_string = ""
    for init in graph.initializer:
        init.doc_string = ""
    for n in graph.node:
        n.doc_string = ""
        for a in n.attribute:
            a.doc_string = ""
            if a.type == AttributeProto.GRAPH:
                _strip_docs(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    _strip_docs(g)


def _dedup_scalars(graph: Any) -> int:
    """Merge identical scalar initializers; returns how many were removed."""
    from onnx import numpy_helper

    keep_names = {i.name for i in graph.input} | {o.name for o in graph.output}
    first: dict[tuple[int, tuple[int, ...], bytes], str] = {}
    alias: dict[str, str] = {}
    for init in graph.initializer:
        if init.name in keep_names or int(np.prod(init.dims)) != 1:
            continue
        arr = numpy_helper.to_array(init)
        key = (int(init.data_type), tuple(int(d) for d in init.dims), arr.tobytes())
        if key in first:
            alias[init.name] = first[key]
        else:
            first[key] = init.name
    if not alias:
        return 0
    for n in graph.node:
        for k, name in enumerate(n.input):
            if name in alias:
                n.input[k] = alias[name]
    keep = [i for i in graph.initializer if i.name not in alias]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return len(alias)


def _rename(graph: Any) -> None:
    io_names = {i.name for i in graph.input} | {o.name for o in graph.output}
    names = _short_names(io_names)
    mapping: dict[str, str] = {}

    def new(name: str) -> str:
        if not name or name in io_names:  # "" marks an omitted optional input
            return name
        if name not in mapping:
            mapping[name] = next(names)
        return mapping[name]

    for init in graph.initializer:
        init.name = new(init.name)
    for sp in graph.sparse_initializer:
        sp.values.name = new(sp.values.name)
    node_names = _short_names(set())
    for n in graph.node:
        for k, name in enumerate(n.input):
            n.input[k] = new(name)
        for k, name in enumerate(n.output):
            n.output[k] = new(name)
        n.name = next(node_names)


def compact_model(model: Any) -> dict[str, int]:
    """Compact ``model`` (an ``onnx.ModelProto``) in place; returns what was done."""
    model.doc_string = ""
    model.producer_name = ""
    model.producer_version = ""
    model.domain = ""
    model.model_version = 0
    del model.metadata_props[:]
    graph = model.graph
    graph.name = "g"
    _strip_docs(graph)
    for f in model.functions:
        f.doc_string = ""
        for n in f.node:
            n.doc_string = ""
    merged = _dedup_scalars(graph)
    renamed = 0
    if not _has_subgraphs(graph):  # subgraphs may read outer names implicitly: leave names alone
        _rename(graph)
        renamed = 1
    return {"merged_scalars": merged, "renamed": renamed}


def compact_file(src: Path, dst: Path, *, verify_x: np.ndarray | None = None) -> dict[str, Any]:
    """Write a compacted copy of ``src`` to ``dst``.

    With ``verify_x``, both files run on those rows in onnxruntime and every output must be
    bit-identical; otherwise ``dst`` gets ``src``'s bytes unchanged.  Returns sizes and what was done.
    """
    import onnx

    model = onnx.load(str(src))
    done = compact_model(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    info: dict[str, Any] = {"bytes_before": src.stat().st_size, **done}
    if verify_x is not None:
        same = _outputs(src, verify_x)
        other = _outputs(dst, verify_x)
        identical = len(same) == len(other) and all(
            a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
            for a, b in zip(same, other, strict=True)
        )
        info["verified_bit_identical"] = identical
        if not identical:
            dst.write_bytes(src.read_bytes())
    info["bytes_after"] = dst.stat().st_size
    return info


def _outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [np.asarray(o) for o in sess.run(None, {name: x.astype(np.float32)})]
