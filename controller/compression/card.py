"""Model card: what was compressed, how, every measured figure, and which limits held."""

from __future__ import annotations

import json
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller.compression.onnx_utils import sha256_file
from controller.compression.search import SearchResult

CARD_SCHEMA = "edgefleet.model-card/1"


def build_card(result: SearchResult, artifact_name: str) -> dict[str, Any]:
    best = result.best
    assert best.artifact is not None and best.metrics is not None
    m = best.metrics
    base = result.baseline
    return {
        "schema": CARD_SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "model": result.source.spec,
            "kind": result.source.kind,
            "sha256": result.source.sha256,
            "input_shape": ["batch", *result.source.sample_shape],
        },
        "data": {"name": result.data_name, "split": "fixed held-out 25 % (split seed 0)"},
        "seed": result.seed,
        "artifact": {
            "file": artifact_name,
            "sha256": sha256_file(best.artifact),
            "size": m.size_bytes,
            "transfer_bytes_zstd19": m.transfer_bytes,
            "runtime": best.runtime,
            "precision": best.precision,
        },
        "pipeline": best.steps,
        "pipeline_name": best.name,
        "pipeline_info": _jsonable(best.info),
        "metrics": m.as_dict(),
        "baseline": base.as_dict(),
        "accuracy_drop_pt": best.accuracy_drop_pt,
        "ratios_vs_fp32": {
            "size": base.size_bytes / m.size_bytes,
            "transfer_vs_raw_fp32": base.size_bytes / m.transfer_bytes,
            "latency_p50": m.host_p50_ms / base.host_p50_ms if base.host_p50_ms else None,
        },
        "profile": result.profile.model_dump(mode="json"),
        "limits": best.limits,
        "limits_met": all(v["met"] for v in best.limits.values()),
        "measurement": {
            "latency": "batch 1, one thread, warm p50/p95 on the controller CPU x profile.compute_slowdown",
            "memory": "RSS growth over session creation + first call (second load), floored at file size",
            "host": f"{platform.machine()} {platform.processor() or platform.system()}",
        },
        "search": {"seconds": round(result.seconds, 2), "candidates": [c.summary() for c in result.candidates]},
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def write_outputs(result: SearchResult, out_dir: Path, stem: str | None = None) -> tuple[Path, Path, dict[str, Any]]:
    """Copy the winning artifact to ``out_dir`` and write ``<stem>.card.json`` beside it."""
    best = result.best
    assert best.artifact is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or f"{_stem(result.source.spec)}-{result.profile.name}"
    artifact = out_dir / f"{stem}{best.artifact.suffix}"
    shutil.copyfile(best.artifact, artifact)
    card = build_card(result, artifact.name)
    card_path = out_dir / f"{stem}.card.json"
    card_path.write_text(json.dumps(card, indent=2, default=str))
    return artifact, card_path, card


def _stem(spec: str) -> str:
    name = spec.rsplit(":", 1)[-1] if ":" in spec and not spec.endswith((".onnx", ".pt", ".pth")) else Path(spec).stem
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "model"


def register_artifact(
    url: str,
    artifact: Path,
    card: dict[str, Any],
    name: str,
    *,
    samples: Any = None,
    token: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """POST /api/v1/models (multipart: file, name, runtime, profile, card, samples) per docs/protocol.md.

    ``samples`` (inputs from the eval split) become the manifest's self-test vectors.
    """
    import io

    import httpx
    import numpy as np

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = {
        "name": name,
        "runtime": card["artifact"]["runtime"],
        "profile": card["profile"]["name"],
        "card": json.dumps(card, default=str),
    }
    files: dict[str, Any] = {"file": (artifact.name, artifact.read_bytes(), "application/octet-stream")}
    if samples is not None:
        buf = io.BytesIO()
        np.savez(buf, x=np.asarray(samples, dtype=np.float32))
        files["samples"] = ("samples.npz", buf.getvalue(), "application/octet-stream")
    r = httpx.post(url.rstrip("/") + "/api/v1/models", data=data, files=files, headers=headers, timeout=timeout)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]
