"""``edgefleet controller serve`` as a real process; settings from flags and environment."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from controller.server import settings_from_args
from controller.testing import free_port
from shared import codec
from shared.messages import ControllerState
from shared.topics import Topics
from simulators.broker import MosquittoProcess
from tests.waiting import wait_until

from .conftest import Probe


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "db": None,
        "data_dir": None,
        "broker": None,
        "topic_root": None,
        "host": None,
        "port": None,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def test_settings_from_flags_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEFLEET_ADMIN_TOKEN", "secret")
    monkeypatch.setenv("EDGEFLEET_BLOCK_SIZE", "4096")
    monkeypatch.setenv("EDGEFLEET_ZSTD", "false")
    monkeypatch.setenv("EDGEFLEET_HTTP_PORT", "9999")
    s = settings_from_args(_args(data_dir=str(tmp_path), broker="mq.local:1884", topic_root="x/v1", port=8181))
    assert (s.admin_token, s.block_size, s.zstd) == ("secret", 4096, False)
    assert (s.broker_host, s.broker_port, s.topic_root, s.http_port) == ("mq.local", 1884, "x/v1", 8181)
    assert s.resolved_db_url() == f"sqlite:///{(tmp_path / 'controller.db').resolve()}"
    assert (
        settings_from_args(_args(db="postgresql+psycopg://u@h/db")).resolved_db_url() == "postgresql+psycopg://u@h/db"
    )
    monkeypatch.setenv("EDGEFLEET_READ_TOKEN", "")  # empty means unset, not "the empty token"
    assert settings_from_args(_args()).read_token is None
    with pytest.raises(SystemExit, match="host:port"):
        settings_from_args(_args(broker="nohost"))


def test_serve_command_process(live_broker: MosquittoProcess, topic_root: str, tmp_path: Path) -> None:
    port = free_port()
    topics = Topics(topic_root)
    cmd = [
        sys.executable,
        "-c",
        "import sys, edgefleet_cli; sys.exit(edgefleet_cli.main(sys.argv[1:]))",
        "controller",
        "serve",
        "--data-dir",
        str(tmp_path / "var"),
        "--broker",
        f"{live_broker.host}:{live_broker.port}",
        "--topic-root",
        topic_root,
        "--port",
        str(port),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    probe = Probe(live_broker)
    try:

        def healthy() -> bool:
            try:
                return bool(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["mqtt_connected"])
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                return False

        wait_until(healthy, timeout=30, what="controller process healthy")
        assert (tmp_path / "var" / "controller.db").is_file()
        assert (tmp_path / "var" / "keys" / "controller.key").is_file()
        probe.subscribe(topics.controller_state())
        assert codec.decode(probe.collect(5, until=lambda g: bool(g))[-1][1], ControllerState).online
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: exit status -SIGTERM
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        got = probe.collect(5, until=lambda g: bool(g))
        assert got and not codec.decode(got[-1][1], ControllerState).online
    finally:
        probe.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
