"""``edgefleet controller ...`` and ``edgefleet compress`` (argparse only at import time)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "controller",
        help="run the fleet controller (REST API, dashboard, MQTT side)",
        description="The fleet controller: model registry, deployments, artifact block server, telemetry ingest.",
    )
    sub = p.add_subparsers(dest="controller_command", metavar="ACTION")
    serve = sub.add_parser(
        "serve",
        help="serve the REST API (OpenAPI at /docs), dashboard and MQTT side",
        description="Settings come from EDGEFLEET_* environment variables; flags override them.",
    )
    serve.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in the data dir)")
    serve.add_argument("--data-dir", help="artifact store, signing key and SQLite file")
    serve.add_argument("--broker", help="host:port of the MQTT broker (default 127.0.0.1:1883)")
    serve.add_argument("--topic-root", help="MQTT topic root (default edgefleet/v1)")
    serve.add_argument("--host", default=None, help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default 8080)")
    serve.set_defaults(func=_serve)

    c = subparsers.add_parser(
        "compress",
        help="compress a model for a device profile",
        description="Search compression pipelines (pruning, quantization, distillation, architecture search) "
        "for the smallest/fastest artifact that meets every limit of a device profile, measured on real data.",
    )
    c.add_argument("model", help="ONNX model file, or a PyTorch module spec for training-based passes")
    c.add_argument("--profile", required=True, help="device profile name (smart-lock, car-ecu, medical-monitor)")
    c.add_argument("--data", required=True, help="npz with x/y arrays, or a bundled data set name (digits, ...)")
    c.add_argument("--out", help="output directory for the artifact and model card")
    c.add_argument("--seed", type=int, default=0, help="random seed (results are reproducible per seed)")
    c.add_argument("--register", metavar="URL", help="upload the result to a controller at URL")
    c.set_defaults(func=_compress)


def _serve(args: argparse.Namespace) -> int:
    from controller.server import serve_command

    return serve_command(args)


def _compress(args: argparse.Namespace) -> int:
    from controller.compression.cli import compress_command

    return compress_command(args)
