"""``edgefleet simulate`` end to end as a subprocess: starts, summarises, stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulators.broker import MosquittoProcess

ROOT = Path(__file__).resolve().parents[2]


def test_simulate_runs_until_interrupted(live_broker: MosquittoProcess, topic_root: str) -> None:
    pytest.importorskip("agent.app")
    cmd = [
        sys.executable,
        "-m",
        "edgefleet_cli",
        "simulate",
        "--devices",
        "3",
        "--controller",
        "",
        "--broker",
        f"{live_broker.host}:{live_broker.port}",
        "--topic-root",
        topic_root,
        "--preinstall",
        "--rate",
        "10",
        "--summary-interval",
        "0.5",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "3 devices, 3 online" in line and "digits-mlp@v0:3" in line:
                break
        else:
            pytest.fail("no summary line with 3 online devices")
        assert any("3 devices, 3 online" in x for x in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + out
    assert "stopping fleet" in out
