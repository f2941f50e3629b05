"""The ``edgefleet`` command: a thin dispatcher.

Each area registers its own sub-commands from a light ``cli`` module (argparse
only at import time), so ``edgefleet agent run`` works on a device that has
no controller dependencies, and ``--help`` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: Which extra provides a top-level module, for a clear message on a partial install.
_EXTRA_OF = {
    **dict.fromkeys(("fastapi", "uvicorn", "sqlalchemy", "httpx", "rich", "onnx", "sklearn", "prometheus_client",
                     "matplotlib", "multipart", "pydantic_settings"), "controller"),
    **dict.fromkeys(("torch", "tensorflow", "onnxscript"), "compress"),
    **dict.fromkeys(("ai_edge_litert", "tflite_runtime"), "litert"),
    "psycopg": "postgres",
}

#: Modules that expose ``register(subparsers)``; each sets ``func`` on its parsers.
_CLI_MODULES = ("agent.cli", "controller.cli", "simulators.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet",
        description=(
            "edgefleet compresses AI models per device profile and rolls them out over MQTT "
            "to fleets of edge devices (agents), which run them locally and report latency and health."
        ),
        epilog="Start with 'edgefleet demo': a local broker, the controller and ~30 simulated devices.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="log line format")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # an agent-only install has no controller extras
            logging.getLogger("edgefleet.cli").debug("sub-commands of %s unavailable: %s", name, exc)
            continue
        module.register(subparsers)
    return parser


def setup_logging(verbose: int, fmt: str = "text") -> None:
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    if fmt == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(
                '{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}'
            )
        )
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def _quiet_chatty_libraries() -> None:
    # One INFO line per HTTP request or MQTT packet drowns the project's own logs.
    for name in ("httpx", "httpcore", "uvicorn.access", "multipart"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.log_format)
    if args.verbose < 2:
        _quiet_chatty_libraries()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"edgefleet {args.command}: needs the '{extra}' extra, missing module {exc.name!r}; "
              f"install it with: pip install 'edgefleet[{extra}]'", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
