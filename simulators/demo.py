"""``edgefleet demo``: a whole fleet on one machine.

Starts a private Mosquitto, the controller (a subprocess on SQLite, exactly
as an operator would run it), simulated devices running the real agent, then
uploads and deploys the example models and shows the rollout live.  Talks to
the controller only over HTTP and MQTT, like any other client.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from simulators.broker import MosquittoProcess, free_port
from simulators.examples import examples_dir

log = logging.getLogger("edgefleet.demo")

#: Which example goes to which profile: LiteRT int8 for locks, ONNX for the others.
DEMO_MODELS = {
    "smart-lock": ("digits-lock", "digits_mlp_int8.tflite", "litert"),
    "car-ecu": ("digits", "digits_mlp.onnx", "onnxruntime"),
    "medical-monitor": ("digits", "digits_mlp.onnx", "onnxruntime"),
}
DEFAULT_MIX = {"smart-lock": 1.0, "car-ecu": 1.0, "medical-monitor": 1.0}


@contextmanager
def controller_process(
    *, data_dir: Path, broker: MosquittoProcess, port: int, token: str, read_token: str = ""
) -> Iterator[str]:
    """Run ``edgefleet controller serve`` as a subprocess; yields its base URL."""
    log_file = (data_dir / "controller.log").open("ab")
    env = {**os.environ, "EDGEFLEET_ADMIN_TOKEN": token, "EDGEFLEET_READ_TOKEN": read_token}
    cmd = [
        sys.executable,
        "-m",
        "edgefleet_cli",
        "-v",
        "controller",
        "serve",
        "--data-dir",
        str(data_dir),
        "--broker",
        f"{broker.host}:{broker.port}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, data_dir / "controller.log")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"controller exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"controller at {url} not healthy after {timeout}s")


def upload_and_deploy(
    client: httpx.Client, profiles: list[str], waves: tuple[int, ...] = (20, 100)
) -> list[str]:
    """Upload each example once, deploy it to every device of its profile; returns deployment ids."""
    uploaded: dict[str, int] = {}
    samples = (examples_dir() / "digits_samples.npz").read_bytes()
    deployments = []
    for profile in profiles:
        name, filename, runtime = DEMO_MODELS[profile]
        if name not in uploaded:
            files = {"file": (filename, (examples_dir() / filename).read_bytes()), "samples": ("samples.npz", samples)}
            r = client.post("/api/v1/models", data={"name": name, "runtime": runtime}, files=files)
            r.raise_for_status()
            uploaded[name] = int(r.json()["version"])
            log.info("uploaded %s v%d (%s)", name, uploaded[name], runtime)
        # A canary wave first: the rest follow only if it goes active without failures.
        body = {"model": name, "version": uploaded[name], "target": {"profile": profile}, "waves": list(waves),
                "gates": {"max_failure_pct": 20}}
        r = client.post("/api/v1/deployments", json=body)
        r.raise_for_status()
        deployments.append(str(r.json()["id"]))
    return deployments


def demo_command(args: argparse.Namespace) -> int:
    from simulators.fleet import Fleet
    from simulators.live import watch_rollout

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="edgefleet-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(16)
    read_token = secrets.token_urlsafe(12)
    port = args.port if args.port and _port_free(args.port) else free_port()
    if args.port and port != args.port:
        print(f"port {args.port} is taken; the controller uses {port}")
    with ExitStack() as stack:
        (data_dir / "mqtt").mkdir(exist_ok=True)
        broker = stack.enter_context(MosquittoProcess(workdir=data_dir / "mqtt"))
        url = stack.enter_context(controller_process(
            data_dir=data_dir, broker=broker, port=port, token=token, read_token=read_token))
        print(f"controller {url}  (admin token {token}); broker 127.0.0.1:{broker.port}; state in {data_dir}")
        fleet = Fleet.from_mix(
            args.devices, DEFAULT_MIX, prefix="demo", controller_url=url, token=token, broker_host=broker.host,
            broker_port=broker.port, topic_root="edgefleet/v1", data_dir=data_dir / "devices",
            agent_overrides={"telemetry_interval_s": 2.0},
        )
        stack.callback(fleet.stop)
        fleet.start()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            upload_and_deploy(client, sorted({d.spec.profile for d in fleet.devices}))
            all_active = watch_rollout(client, expected=len(fleet.devices))
            print(f"\ndashboard {url}/?token={read_token}   API docs {url}/docs   metrics {url}/metrics")
            print(f"REST: curl -H 'Authorization: Bearer {token}' {url}/api/v1/devices")
            if args.exit_when_active:
                return 0 if all_active else 1
            print("Ctrl-C to stop.")
            _wait_forever()
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_forever() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping")


__all__ = ["controller_process", "demo_command", "upload_and_deploy"]
