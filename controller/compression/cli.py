"""``edgefleet compress MODEL --profile P --data D``: search, progress bars, summary table."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from controller.compression.errors import CompressionError, CompressionFailed


def _fmt_bytes(n: float) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def compress_command(args: argparse.Namespace) -> int:
    """Run the search; exit 0 with artifact + card written, 2 when no candidate fits, 1 on bad input."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="edgefleet-compress-"))
    try:
        return _compress(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compress(args: argparse.Namespace, work: Path) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    logging.getLogger().setLevel(logging.WARNING)  # onnxruntime.quantization logs INFO on the root logger
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from controller.compression.card import register_artifact, write_outputs
    from controller.compression.search import CandidateResult, compress

    console = Console(stderr=True)
    out = Path(args.out or "compressed")
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bars:
        task = bars.add_task(f"compressing for {args.profile}", total=None)

        def progress(stage: str, i: int, n: int, res: CandidateResult | None) -> None:
            if stage == "start":
                bars.update(task, total=n, completed=i, description=f"candidate {i + 1}/{n}")
            else:
                bars.update(task, completed=i + 1)

        try:
            result = compress(
                args.model,
                args.profile,
                args.data,
                seed=args.seed,
                progress=progress,
                workdir=work,
                log=lambda m: bars.console.log(m),
            )
        except CompressionFailed as e:
            console.print(f"[red]{e}[/red]")
            if str(args.model).endswith(".onnx"):
                console.print(
                    "hint: an ONNX model unlocks only post-training passes; a PyTorch model "
                    "(module:function or .pt) with labelled data adds pruning, distillation and student search"
                )
            return 2
        except (CompressionError, KeyError) as e:
            console.print(f"[red]error:[/red] {e}")
            return 1
        bars.update(task, completed=bars.tasks[0].total, description="done")

    base = result.baseline
    table = Table(title=f"{result.source.spec} -> {result.profile.name} (baseline {base.metric} {base.score:.2f} %)")
    for col in ("candidate", "precision", "size", "wire (zstd)", "size x", "Δ pt", "p95 ms", "memory", "verdict"):
        table.add_column(col, justify="left" if col in ("candidate", "verdict") else "right")
    for c in result.candidates:
        m = c.metrics
        mark = "[bold green]★ chosen[/]" if c is result.best else ("ok" if c.ok else "")
        verdict = mark or "[red]" + ("; ".join(c.violations) or str(c.error))[:70] + "[/]"
        if m is None:
            table.add_row(c.name, c.precision, "-", "-", "-", "-", "-", "-", verdict)
            continue
        table.add_row(
            c.name,
            c.precision,
            _fmt_bytes(m.size_bytes),
            _fmt_bytes(m.transfer_bytes),
            f"{base.size_bytes / m.size_bytes:.1f}",
            f"{c.accuracy_drop_pt:+.2f}",
            f"{m.p95_ms:.3f}",
            _fmt_bytes(m.memory_bytes),
            verdict,
        )
    Console(width=max(Console().width, 130)).print(table)
    artifact, card_path, card = write_outputs(result, out)
    console.print(f"artifact: {artifact}\ncard:     {card_path}\nsearch:   {result.seconds:.1f} s")
    if args.register:
        from controller.compression.data import fit_shape, load_data, split

        name = card_path.name.removesuffix(".card.json")
        samples = fit_shape(split(load_data(args.data)).eval.x[:16], result.source.sample_shape)
        reply: dict[str, Any] = register_artifact(
            args.register, artifact, card, name, samples=samples, token=os.environ.get("EDGEFLEET_TOKEN")
        )
        console.print(f"registered: {reply}")
    return 0
