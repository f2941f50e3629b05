"""``edgefleet controller serve``: settings from env, flags override, uvicorn runs the app."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from controller.settings import Settings

log = logging.getLogger("edgefleet.controller")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "db", None):
        overrides["db_url"] = args.db
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "broker", None):
        host, sep, port = str(args.broker).rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SystemExit(f"--broker must be host:port, got {args.broker!r}")
        overrides["broker_host"], overrides["broker_port"] = host, int(port)
    if getattr(args, "topic_root", None):
        overrides["topic_root"] = args.topic_root
    if getattr(args, "host", None):
        overrides["http_host"] = args.host
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    return Settings(**overrides)  # type: ignore[arg-type]


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from controller.main import create_app

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    app = create_app(settings)
    log.info("serving on http://%s:%d (OpenAPI at /docs)", settings.http_host, settings.http_port)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="info", access_log=False)
    return 0


__all__ = ["serve_command", "settings_from_args"]
