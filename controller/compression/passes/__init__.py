"""Registry of compression passes.  Importing this package is cheap: torch, onnx,
onnxruntime.quantization and tensorflow are imported inside each pass's ``run``."""

from controller.compression.passes import compact, distill, pruning, quantize, tflite  # noqa: F401  (registration)
from controller.compression.passes.base import REGISTRY, ModelState, Pass, PassConfig, PassContext, get_pass, register

__all__ = ["REGISTRY", "ModelState", "Pass", "PassConfig", "PassContext", "get_pass", "register"]
