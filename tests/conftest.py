"""Shared fixtures: a real Mosquitto per test module, a unique topic root per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from simulators.broker import MosquittoProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    """A private Mosquitto on a free port; tests may stop/kill/restart it."""
    proc = MosquittoProcess(workdir=tmp_path_factory.mktemp("mosquitto"))
    proc.start()
    yield proc
    proc.close()


@pytest.fixture
def live_broker(broker: MosquittoProcess) -> MosquittoProcess:
    """The module broker, restarted if an earlier test left it stopped."""
    broker.start()
    return broker


@pytest.fixture
def topic_root() -> str:
    """Unique root per test so retained messages never leak between tests."""
    return f"test-{uuid.uuid4().hex[:12]}/v1"
