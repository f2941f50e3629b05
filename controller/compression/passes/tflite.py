"""Full-integer int8 ``.tflite`` for LiteRT profiles (no training needed).

ONNX -> TF via ``controller.compression.onnx_tf`` -> ``TFLiteConverter`` with the calibration
split as representative data, int8 builtins only, int8 input and output tensors (the agent
quantizes inputs with the tensor's scale/zero point).  Must run on the fp32 ONNX model: it is
the last step of a pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydantic import Field

from controller.compression.passes.base import ModelState, Pass, PassConfig, PassContext, register


class TFLiteConfig(PassConfig):
    representative_samples: int = Field(default=200, ge=1)


@register
class TFLiteFullInt8(Pass):
    name = "tflite_int8"
    Config = TFLiteConfig

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        import os
        import warnings

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import onnx
        import tensorflow as tf

        from controller.compression import onnx_tf
        from controller.compression.data import fit_shape

        cfg: TFLiteConfig = self.config  # type: ignore[assignment]
        model = onnx.load(str(state.onnx_path))
        if state.precision != "fp32":
            raise ValueError("tflite_int8 needs the fp32 ONNX model; put it last in the pipeline")
        graph = onnx_tf.build_graph_fn(model)
        tf.random.set_seed(ctx.seed)
        spec = tf.TensorSpec((1, *ctx.sample_shape), tf.float32, name="input")
        fn = tf.function(graph, input_signature=[spec], autograph=False)
        concrete = fn.get_concrete_function()
        calib = fit_shape(ctx.data.calib.x, ctx.sample_shape)[: cfg.representative_samples]

        def representative() -> Iterator[list[np.ndarray]]:
            for row in calib:
                yield [row[None].astype(np.float32)]

        conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with warnings.catch_warnings():  # "statistics for quantized inputs": we pass int8 I/O on purpose
            warnings.simplefilter("ignore", UserWarning)
            blob = conv.convert()
        out = ctx.new_path("int8", ".tflite")
        out.write_bytes(blob)
        return state.evolve(tflite_path=out, precision="int8")
