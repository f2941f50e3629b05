"""Run a private Mosquitto as a subprocess on a free port.

Used by ``edgefleet demo`` and the test-suite, so neither depends on a
system broker and tests can kill and restart theirs at will.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_self() -> list[str]:
    """Mosquitto started as root drops to user 'mosquitto', which cannot read our private temp dirs."""
    return ["user root"] if os.geteuid() == 0 else []


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("mosquitto not found; install it (Debian: apt-get install mosquitto) or run ./dev.sh setup")


class MosquittoProcess:
    """A Mosquitto with persistence in its own directory, so retained state survives restarts."""

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgefleet-mqtt-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text(
            "\n".join([
                f"listener {self.port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
                "set_tcp_nodelay true",
                # Artifact blocks burst to many subscribers at once; the default
                # queue of 1000 drops them for slow QoS 1 subscribers.
                "max_queued_messages 100000",
                "max_inflight_messages 100",
                "max_packet_size 2097152",
                f"log_dest file {self.workdir}/mosquitto.log",
                *_run_as_self(),
                "",
            ])
        )

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def stop(self, kill: bool = False) -> None:
        """Stop the broker; ``kill`` sends SIGKILL (a crash, not a clean shutdown)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
