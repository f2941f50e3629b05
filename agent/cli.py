"""``edgefleet agent ...`` sub-commands (argparse only at import time)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "agent",
        help="run the device agent",
        description="The device agent: receives signed models over MQTT, verifies and runs them, reports telemetry.",
    )
    sub = p.add_subparsers(dest="agent_command", metavar="ACTION")
    run = sub.add_parser(
        "run",
        help="connect to the broker and serve models (settings from --config, EDGEFLEET_AGENT_* env)",
        description="Run the agent until interrupted. Settings come from a TOML/JSON file given with --config "
        "and from EDGEFLEET_AGENT_* environment variables (env wins).",
    )
    run.add_argument("--config", help="settings file (TOML or JSON)")
    run.add_argument("--device-id", help="overrides EDGEFLEET_AGENT_DEVICE_ID")
    run.add_argument("--broker", help="host:port of the MQTT broker")
    run.add_argument("--data-dir", help="where model slots and downloads live")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agent.app import run_command

    return run_command(args)
