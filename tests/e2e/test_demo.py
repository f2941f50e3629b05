"""The README's main job, as a user runs it: ``edgefleet demo`` converges and exits cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_rolls_out_to_every_device(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgefleet_cli", "demo", "--devices", "6", "--port", "0", "--exit-when-active",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert re.search(r"rollout\s.*6/6", out.stdout), out.stdout[-2000:]
    assert "dashboard http://127.0.0.1:" in out.stdout
    # Every device runs the model meant for its profile.
    for device, model in (("demo-lock-001", "digits-lock v1"), ("demo-car-002", "digits v1"),
                          ("demo-med-003", "digits v1")):
        assert re.search(rf"{device}\s.*{re.escape(model)}\s.*active", out.stdout), device
    # The controller ran on SQLite in the data dir and shut down.
    assert (tmp_path / "controller.db").exists()
