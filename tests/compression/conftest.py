"""Small real models for the compression tests (trained in seconds, cached per session)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")

from controller.compression import examples  # noqa: E402
from controller.compression import torch_utils as tu  # noqa: E402
from controller.compression.data import Splits, load_data, split  # noqa: E402


@pytest.fixture(scope="session")
def digits() -> Splits:
    return split(load_data("digits"))


@pytest.fixture(scope="session")
def mlp() -> torch.nn.Module:
    return examples.digits_mlp()


@pytest.fixture(scope="session")
def cnn() -> torch.nn.Module:
    return examples.digits_cnn()


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory: pytest.TempPathFactory, mlp: torch.nn.Module) -> Path:
    return tu.export_onnx(mlp, (64,), tmp_path_factory.mktemp("mlp") / "digits_mlp.onnx")


@pytest.fixture(scope="session")
def cnn_onnx(tmp_path_factory: pytest.TempPathFactory, cnn: torch.nn.Module) -> Path:
    return tu.export_onnx(cnn, (1, 8, 8), tmp_path_factory.mktemp("cnn") / "digits_cnn.onnx")


class Encoder(torch.nn.Module):
    """Transformer encoder classifier; exported with dynamic batch *and* sequence axes."""

    def __init__(self, d: int = 32, n_out: int = 5) -> None:
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x).mean(1))


@pytest.fixture(scope="session")
def encoder_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    model = Encoder().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the dynamo exporter keeps the sequence axis symbolic through attention's reshapes
        # (the TorchScript exporter bakes the traced length into them)
        seq = torch.export.Dim("seq", min=2, max=64)
        torch.onnx.export(
            model,
            (torch.randn(2, 6, 32),),
            str(d / "encoder.onnx"),
            dynamo=True,
            verbose=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch"), 1: seq}},
        )
    x = np.random.default_rng(0).standard_normal((240, 6, 32)).astype(np.float32)
    np.savez(d / "encoder.npz", x=x)  # no labels: the engine falls back to fidelity
    return d / "encoder.onnx", d / "encoder.npz"
