"""A device whose storage fills up mid-download reports io_error and keeps serving its model."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.messages import EventKind
from tests.agent.conftest import DEVICE
from tests.agent.models import wide_mlp
from tests.agent.test_update_mqtt import install


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 320 KiB filesystem (tmpfs), so writes fail with ENOSPC like a full flash."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_download_fails_cleanly(fake, make_agent, model_files, x, tmp_path, small_disk):  # type: ignore[no-untyped-def]
    agent = make_agent(data_dir=small_disk / DEVICE, max_artifact_bytes=4 * 1024 * 1024)
    first = install(fake, model_files["v1"], x, tmp_path)
    before = agent.predict(x[:1])

    big = wide_mlp(n_in=x.shape[1], hidden=40_000)
    assert len(big) > 1_000_000  # more than the filesystem holds
    manifest = fake.manifest(big, device_id=DEVICE, version=2, block_size=64 * 1024)
    fake.deploy(manifest)
    failed = fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is EventKind.FAILED, 20)
    assert failed.reason == "io_error"
    assert "No space left" in (failed.detail or "")
    # The old model keeps serving, unchanged.
    assert agent.status()["active_model"]["sha256"] == first.model.sha256
    np.testing.assert_array_equal(agent.predict(x[:1]), before)
    assert agent.status()["download"] is None
