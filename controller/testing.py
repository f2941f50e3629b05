"""Run a real controller in-process (uvicorn in a thread on a free port), for tests and demos::

with run_controller(Settings(data_dir=tmp, broker_port=broker.port, topic_root=root)) as ctl:
    httpx.get(ctl.url + "/healthz")
    ctl.app.state.bridge.wait_connected()
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from controller.main import create_app
from controller.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningController:
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    settings: Settings

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_controller(settings: Settings, *, timeout: float = 20.0, wait_mqtt: bool = True) -> RunningController:
    """Start the app with its lifespan (MQTT side included) and wait until it serves HTTP."""
    port = free_port()
    settings = settings.model_copy(update={"http_host": "127.0.0.1", "http_port": port})
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"controller-http-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("controller did not start")
        time.sleep(0.02)
    bridge = app.state.bridge
    if wait_mqtt and bridge is not None and not bridge.wait_connected(max(0.1, deadline - time.monotonic())):
        server.should_exit = True
        thread.join(5)
        raise RuntimeError("controller did not connect to the MQTT broker")
    return RunningController(app, server, thread, f"http://127.0.0.1:{port}", settings)


@contextmanager
def run_controller(settings: Settings, **kwargs: bool | float) -> Iterator[RunningController]:
    ctl = start_controller(settings, **kwargs)  # type: ignore[arg-type]
    try:
        yield ctl
    finally:
        ctl.stop()


__all__ = ["RunningController", "free_port", "run_controller", "start_controller"]
