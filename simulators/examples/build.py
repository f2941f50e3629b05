"""Build the example models from scikit-learn's bundled digits data set.

The files this writes are committed next to this module, so tests and the demo
need neither torch nor TensorFlow at run time; run ``edgefleet examples`` only to
rebuild them. torch trains, ``torch.onnx.export`` writes ONNX, and the int8
LiteRT model is converted from the *same* trained weights (a plain
``tf.function``, not Keras, because Keras 3's converter path is the fragile
one), so the fp32 and int8 accuracies are directly comparable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

#: (file name, seed, hidden widths). v2 differs in seed and width, so a demo can
#: roll out a genuinely different model with the same input/output contract.
ONNX_MODELS: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("digits_mlp.onnx", 0, (64, 32)),
    ("digits_mlp_v2.onnx", 1, (96, 48)),
)
TFLITE_MODEL = "digits_mlp_int8.tflite"
TEST_FILE = "digits_test.npz"
SAMPLES_FILE = "digits_samples.npz"
N_SAMPLES = 8
OPSET = 17


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1] (pixel values are 0..16), 75/25 stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return x_tr, x_te, y_tr, y_te


def _train_mlp(x: np.ndarray, y: np.ndarray, hidden: tuple[int, int], seed: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Linear(hidden[1], 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(60):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()  # type: ignore[no-untyped-call]  # torch: unannotated
            opt.step()
    model.eval()
    return model


def _export_onnx(model: Any, path: Path) -> None:
    import torch

    torch.onnx.export(
        model,
        (torch.zeros(1, 64),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def _onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"input": x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def _convert_tflite_int8(model: Any, x_rep: np.ndarray) -> bytes:
    """Full-integer int8 conversion of the torch MLP's weights."""
    import tensorflow as tf

    linears = [m for m in model if hasattr(m, "weight")]
    weights = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears]

    class Mlp(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type information
        def __init__(self) -> None:
            super().__init__()
            self.layers = [(tf.constant(w), tf.constant(b)) for w, b in weights]

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="input")])  # type: ignore[untyped-decorator]
        def __call__(self, x: Any) -> Any:
            for i, (w, b) in enumerate(self.layers):
                x = tf.matmul(x, w) + b
                if i < len(self.layers) - 1:
                    x = tf.nn.relu(x)
            return {"logits": x}

    module = Mlp()

    def representative() -> Any:
        for row in x_rep[:300]:
            yield [row[None, :]]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def tflite_predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Dequantized logits from the int8 model (quantize input, run row by row)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [len(x), 64])
    interp.allocate_tensors()
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    q = np.clip(np.round(x / s_in + z_in), -128, 127).astype(np.int8)
    interp.set_tensor(inp["index"], q)
    interp.invoke()
    logits: np.ndarray = (interp.get_tensor(out["index"]).astype(np.float32) - z_out) * np.float32(s_out)
    return logits


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entry(path: Path, **extra: Any) -> dict[str, Any]:
    return {"file": path.name, "sha256": _sha256(path), "size": path.stat().st_size, **extra}


def build_examples(out_dir: Path | str, seed: int = 0) -> dict[str, Any]:
    """Train, export and measure every example; write ``manifest.json``; return it."""
    import torch

    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_tr, x_te, y_tr, y_te = load_digits_split(seed)

    np.savez_compressed(out / TEST_FILE, x=x_te, y=y_te)
    np.savez_compressed(out / SAMPLES_FILE, x=x_te[:N_SAMPLES])

    models: dict[str, Any] = {}
    first = None
    for version, (name, model_seed, hidden) in enumerate(ONNX_MODELS, start=1):
        model = _train_mlp(x_tr, y_tr, hidden, seed + model_seed)
        first = first or model
        path = out / name
        _export_onnx(model, path)
        models[name] = _entry(
            path,
            runtime="onnxruntime",
            precision="fp32",
            version=version,
            hidden=list(hidden),
            input={"name": "input", "shape": ["batch", 64], "dtype": "float32"},
            output={"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
            accuracy=round(_onnx_accuracy(path, x_te, y_te), 4),
        )

    tfl = out / TFLITE_MODEL
    tfl.write_bytes(_convert_tflite_int8(first, x_tr))
    from ai_edge_litert.interpreter import Interpreter

    probe = Interpreter(model_path=str(tfl))
    inp, outp = probe.get_input_details()[0], probe.get_output_details()[0]
    acc = float((tflite_predict(tfl, x_te).argmax(axis=1) == y_te).mean())
    models[TFLITE_MODEL] = _entry(
        tfl,
        runtime="litert",
        precision="int8",
        version=1,
        hidden=list(ONNX_MODELS[0][2]),
        source=ONNX_MODELS[0][0],
        input={
            "name": inp["name"],
            "shape": ["batch", 64],
            "dtype": "int8",
            "scale": float(inp["quantization"][0]),
            "zero_point": int(inp["quantization"][1]),
        },
        output={
            "name": outp["name"],
            "shape": ["batch", 10],
            "dtype": "int8",
            "scale": float(outp["quantization"][0]),
            "zero_point": int(outp["quantization"][1]),
        },
        accuracy=round(acc, 4),
    )

    manifest = {
        "dataset": {
            "name": "digits",
            "source": "sklearn.datasets.load_digits",
            "preprocessing": "x / 16.0 (float32, [0, 1])",
            "split": {"test_size": 0.25, "random_state": seed, "stratify": True},
            "n_train": len(x_tr),
            "n_test": len(x_te),
            "n_features": 64,
            "n_classes": 10,
        },
        "seed": seed,
        "models": models,
        "data": {
            "digits_test": _entry(out / TEST_FILE, keys=["x", "y"], n=len(x_te)),
            "digits_samples": _entry(out / SAMPLES_FILE, keys=["x"], n=N_SAMPLES),
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def build_command(args: argparse.Namespace) -> int:
    from simulators.examples import examples_dir

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Path(args.out) if getattr(args, "out", None) else examples_dir()
    manifest = build_examples(out)
    for name, m in manifest["models"].items():
        print(f"{name:28s} {m['size']:>8d} B  {m['runtime']:12s} {m['precision']:5s} accuracy {m['accuracy']:.4f}")
    print(f"wrote {out / 'manifest.json'}")
    return 0
