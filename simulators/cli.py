"""``edgefleet simulate``, ``edgefleet demo`` and ``edgefleet examples`` (argparse only at import time)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "simulate",
        help="run N simulated devices (the real agent with simulated hardware)",
        description="Start N simulated devices that run the real agent code against a broker, with a per-profile "
        "compute slowdown, and feed them real samples from a bundled data set.",
    )
    s.add_argument("--devices", type=int, default=10, help="number of devices")
    s.add_argument("--mix", default="smart-lock=1,car-ecu=1,medical-monitor=1",
                   help="profile weights, e.g. smart-lock=2,car-ecu=1,medical-monitor=1")
    s.add_argument("--controller", default="http://127.0.0.1:8080",
                   help="controller URL (registration, public key); '' for none")
    s.add_argument("--broker", default="127.0.0.1:1883", help="host:port of the MQTT broker")
    s.add_argument("--topic-root", default="edgefleet/v1", help="MQTT topic root")
    s.add_argument("--rate", type=float, default=5.0, help="inferences per second per device")
    s.add_argument("--prefix", default="sim", help="device id prefix")
    s.add_argument("--token", help="admin bearer token for registration")
    s.add_argument("--group", help="device group to register (default: the prefix)")
    s.add_argument("--flaky", type=float, default=0.0,
                   help="fraction of time each device's link is down (0 = reliable), e.g. 0.1")
    s.add_argument("--seed", type=int, default=0, help="seed for simulated hardware readings and outages")
    s.add_argument("--data-dir", help="where device data dirs live (default: a temp dir, removed on exit)")
    s.add_argument("--preinstall", action="store_true",
                   help="start every device with the bundled example model in its active slot (no controller needed)")
    s.add_argument("--summary-interval", type=float, default=5.0, help="seconds between summary lines")
    s.set_defaults(func=_simulate)

    d = subparsers.add_parser(
        "demo",
        help="local broker + controller on SQLite + ~30 simulated devices, deploy example models",
        description="Start a private Mosquitto, the controller on SQLite and simulated smart locks, car ECUs and "
        "medical monitors; deploy the example models and show a live table until all are active. The API "
        "stays up until Ctrl-C.",
    )
    d.add_argument("--devices", type=int, default=30, help="number of simulated devices")
    d.add_argument("--port", type=int, default=8080, help="controller HTTP port")
    d.add_argument("--data-dir", help="where the demo keeps its state (default: a temp dir)")
    d.add_argument("--exit-when-active", action="store_true", help="stop once every device runs the new model")
    d.set_defaults(func=_demo)

    e = subparsers.add_parser(
        "examples",
        help="(re)build the example models from the bundled data sets",
        description="Train small classifiers on scikit-learn's bundled data sets and write ONNX and .tflite models.",
    )
    e.add_argument("--out", help="output directory (default: the package's examples dir)")
    e.set_defaults(func=_examples)


def _simulate(args: argparse.Namespace) -> int:
    from simulators.fleet import simulate_command

    return simulate_command(args)


def _demo(args: argparse.Namespace) -> int:
    from simulators.demo import demo_command

    return demo_command(args)


def _examples(args: argparse.Namespace) -> int:
    from simulators.examples.build import build_command

    return build_command(args)
