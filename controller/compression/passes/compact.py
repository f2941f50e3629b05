"""``compact``: the lossless last step of every ONNX pipeline (see ``controller.compression.compact``).

Short tensor/node names (graph input/output names kept), no doc strings / metadata / producer
strings / ``value_info``, identical scalar initializers merged.  Outputs are checked bit for bit
against the uncompacted file on calibration rows; if they differ, or compaction fails, the
uncompacted file is kept and ``info["compact"]`` says why.
"""

from __future__ import annotations

from pydantic import Field

from controller.compression.passes.base import ModelState, Pass, PassConfig, PassContext, register


class CompactConfig(PassConfig):
    #: Calibration rows both files run on; 0 skips the bit-identity check.
    verify_rows: int = Field(default=32, ge=0)


@register
class Compact(Pass):
    name = "compact"
    Config = CompactConfig

    def run(self, state: ModelState, ctx: PassContext) -> ModelState:
        import numpy as np

        from controller.compression.compact import compact_file
        from controller.compression.data import fit_shape

        cfg: CompactConfig = self.config  # type: ignore[assignment]
        x = None
        if cfg.verify_rows:
            x = fit_shape(ctx.data.calib.x[: cfg.verify_rows], ctx.sample_shape).astype(np.float32)
        out = ctx.new_path("compact")
        try:
            info = compact_file(state.onnx_path, out, verify_x=x)
        except Exception as e:  # an odd graph the checker rejects: ship it uncompacted
            ctx.log(f"compact skipped ({type(e).__name__}: {str(e)[:120]})")
            return state.evolve(info={"compact": {"skipped": f"{type(e).__name__}: {str(e)[:200]}"}})
        if info.get("verified_bit_identical") is False:
            ctx.log("compact: outputs differed; keeping the uncompacted file")
            return state.evolve(info={"compact": {**info, "skipped": "outputs not bit-identical"}})
        return state.evolve(onnx_path=out, info={"compact": info})
