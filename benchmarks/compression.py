"""Compression benchmark: every bundled example x built-in profile, then the goal checks.

    python benchmarks/compression.py            # full run (~3 min on 2 cores)
    python benchmarks/compression.py --quick    # one example, one profile

Ratios are against the uploaded fp32 ONNX model, as uploaded (not compacted), measured the
same way (onnxruntime, one thread, batch 1); every ONNX artifact ends with the lossless
``compact`` step, and a separate table shows its effect and the ratios against a compacted fp32.
"wire" is raw fp32 file bytes / zstd-19 bytes of the artifact, i.e. what
the block transfer actually sends.  Latency ratio = host p50 of the artifact on its runtime /
host p50 of fp32 onnxruntime (for LiteRT rows that compares runtimes too).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from controller.compression.errors import CompressionFailed
from controller.compression.examples import EXAMPLES
from controller.compression.search import Candidate, CandidateResult, SearchResult, compress
from shared.profiles import BUILTIN_PROFILES, DeviceProfile

SPEC = "controller.compression.examples:{}"
#: Limits wide open, for measuring candidates whatever they cost.
OPEN = BUILTIN_PROFILES["car-ecu"].model_copy(
    update={
        "name": "bench-open",
        "max_artifact_bytes": 1 << 40,
        "p95_latency_ms": 1e9,
        "max_accuracy_drop_pt": 100.0,
        "max_memory_bytes": 1 << 40,
        "compute_slowdown": 1.0,
    }
)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 or i == 1 or i == 2 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [_row(head, widths), _row(["-" * w for w in widths], widths)]
    return "\n".join([*lines, *(_row(r, widths) for r in rows)])


def run_profile(example: str, profile: DeviceProfile, work: Path) -> tuple[SearchResult | None, str, float]:
    data = EXAMPLES[example][0]
    t0 = time.perf_counter()
    try:
        return compress(SPEC.format(example), profile, data, workdir=work / f"{example}-{profile.name}"), "", 0.0
    except CompressionFailed as e:
        return None, "; ".join(e.report[0]["violations"]) if e.report else str(e), time.perf_counter() - t0


def per_profile(examples: list[str], profiles: list[str], work: Path) -> dict[tuple[str, str], SearchResult]:
    rows, results = [], {}
    for ex in examples:
        for name in profiles:
            res, why, secs = run_profile(ex, BUILTIN_PROFILES[name], work)
            if res is None:
                rows.append([ex, name, "NONE FITS: " + why[:40], "-", "-", "-", "-", "-", "-", f"{secs:.1f}"])
                continue
            results[(ex, name)] = res
            b, m = res.baseline, res.best.metrics
            assert m is not None
            rows.append(
                [
                    ex,
                    name,
                    res.best.name,
                    f"{m.size_bytes / 1024:.1f}",
                    f"{b.size_bytes / m.size_bytes:.1f}x",
                    f"{b.size_bytes / m.transfer_bytes:.1f}x",
                    f"{res.best.accuracy_drop_pt or 0:+.2f}",
                    f"{m.host_p50_ms / b.host_p50_ms:.2f}",
                    f"{m.p95_ms:.3f}/{res.profile.p95_latency_ms:g}",
                    f"{res.seconds:.1f}",
                ]
            )
            print(f"  measured {ex} x {name}: {res.best.name}", file=sys.stderr, flush=True)
    head = [
        "example",
        "profile",
        "chosen pipeline",
        "KiB",
        "size x",
        "wire x",
        "drop pt",
        "lat x",
        "p95 dev ms/limit",
        "search s",
    ]
    print("\n## Best artifact per example x profile (every limit met)\n")
    print(_table(head, rows))
    return results


def _cands(res: SearchResult, *names: str) -> list[CandidateResult]:
    return [c for c in res.candidates if c.name in names and c.metrics is not None]


def goals(examples: list[str], results: dict[tuple[str, str], SearchResult], work: Path, quick: bool) -> None:
    rows: list[list[str]] = []
    compact_rows: list[list[str]] = []

    def add(goal: str, model: str, what: str, measured: str, ok: bool) -> None:
        rows.append([goal, model, what, measured, "yes" if ok else "NO"])

    prune = [
        Candidate("fp32", []),
        Candidate("int8-dynamic", [("quantize_dynamic_int8", {})]),
        Candidate("int8-static", [("quantize_static_int8", {})]),
        Candidate("prune80+int8", [("weight_pruning", {"sparsity": 0.8}), ("quantize_static_int8", {})]),
        Candidate("channels50+int8", [("structured_pruning", {"keep_ratio": 0.5}), ("quantize_static_int8", {})]),
        Candidate(
            "channels50+prune70+int8",
            [
                ("structured_pruning", {"keep_ratio": 0.5}),
                ("weight_pruning", {"sparsity": 0.7}),
                ("quantize_static_int8", {}),
            ],
        ),
        Candidate("student-32", [("distillation", {"hidden": [32]})]),
        Candidate("student-64", [("distillation", {"hidden": [64]})]),
    ]
    conv_student = Candidate("student-c8x16", [("distillation", {"conv_channels": [8, 16], "hidden": []})])
    models = examples + ([] if quick else ["digits_wide_mlp"])
    for ex in models:
        cands = prune + ([conv_student] if len(EXAMPLES[ex][1]) == 3 else [])
        res = compress(
            SPEC.format(ex), OPEN, EXAMPLES[ex][0], workdir=work / f"goals-{ex}", candidates=cands, latency_budget_s=2.0
        )
        b = res.baseline
        fp32_compact = next((c for c in _cands(res, "fp32")), None)
        for c in _cands(res, "fp32", "int8-dynamic", "int8-static"):
            cinfo = c.info.get("compact", {})
            before, after = cinfo.get("bytes_before", 0), c.metrics.size_bytes  # type: ignore[union-attr]
            vs_cfp32 = "-"
            if fp32_compact is not None and c.name != "fp32":
                vs_cfp32 = f"{fp32_compact.metrics.size_bytes / after:.2f}x"  # type: ignore[union-attr]
            compact_rows.append(
                [
                    ex,
                    c.name,
                    str(before),
                    str(after),
                    f"{100 * (1 - after / before):.1f} %" if before else "-",
                    f"{b.size_bytes / before:.2f}x -> {b.size_bytes / after:.2f}x" if before else "-",
                    vs_cfp32,
                    "yes" if cinfo.get("verified_bit_identical") else "NO",
                ]
            )
        for c in _cands(res, "int8-dynamic", "int8-static"):
            ratio, drop = b.size_bytes / c.metrics.size_bytes, c.accuracy_drop_pt or 0  # type: ignore[union-attr]
            add(
                "int8 >= 3.5x smaller, <= 1 pt", ex, c.name, f"{ratio:.2f}x, {drop:+.2f} pt", ratio >= 3.5 and drop <= 1
            )
        for c in _cands(res, "prune80+int8", "channels50+int8", "channels50+prune70+int8"):
            ratio, drop = b.size_bytes / c.metrics.transfer_bytes, c.accuracy_drop_pt or 0  # type: ignore[union-attr]
            add(
                "prune+int8+zstd >= 10x wire, <= 1 pt",
                ex,
                c.name,
                f"{ratio:.1f}x, {drop:+.2f} pt",
                ratio >= 10 and drop <= 1,
            )
        for c in _cands(res, "int8-dynamic", "int8-static"):
            lat = c.metrics.host_p50_ms / b.host_p50_ms  # type: ignore[union-attr]
            add(
                "int8 latency <= 0.6x fp32",
                ex,
                c.name,
                f"{lat:.2f}x ({c.metrics.host_p50_ms * 1000:.0f} vs {b.host_p50_ms * 1000:.0f} us)",  # type: ignore[union-attr]
                lat <= 0.6,
            )
        if ex != "digits_wide_mlp":
            for c in _cands(res, "student-32", "student-64", "student-c8x16"):
                shrink = c.info["teacher_params"] / c.info["params"]
                drop = c.accuracy_drop_pt or 0
                add(
                    "student >= 4x fewer params, <= 2 pt",
                    ex,
                    c.name,
                    f"{shrink:.1f}x, {drop:+.2f} pt",
                    shrink >= 4 and drop <= 2,
                )
        print(f"  goals measured for {ex}", file=sys.stderr, flush=True)
    print("\n## Goal checks (fp32 baseline = the uploaded model; pt = accuracy drop in points)\n")
    print(_table(["goal", "model", "candidate", "measured", "met"], rows))
    print(
        "\n## Lossless compaction (last step of every ONNX pipeline; ratios above include it)\n\n"
        "size x = uploaded fp32 file / artifact, before -> after compaction; the uploaded fp32 file itself is\n"
        "never compacted for the ratios.  x cfp32 = compacted fp32 / artifact (compaction credited to both).\n"
    )
    print(
        _table(
            ["model", "candidate", "bytes before", "bytes after", "saved", "size x vs upload", "x cfp32", "bit-ident"],
            compact_rows,
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits_mlp on car-ecu only")
    ap.add_argument("--examples", nargs="*", default=["digits_mlp", "digits_cnn", "breast_cancer_mlp"])
    ap.add_argument("--profiles", nargs="*", default=["smart-lock", "car-ecu", "medical-monitor"])
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    examples, profiles = (["digits_mlp"], ["car-ecu"]) if args.quick else (args.examples, args.profiles)
    import onnxruntime
    import torch

    print(
        f"# edgefleet compression benchmark\n\nhost: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
        "latency: batch 1, one thread"
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        work = Path(tmp)
        results = per_profile(examples, profiles, work)
        goals(examples, results, work, args.quick)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
