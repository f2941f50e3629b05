"""Live rollout view for the terminal: a device table and a progress bar."""

from __future__ import annotations

import shutil
import time
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ACTIVE = "active"


def device_rows(devices: list[dict[str, Any]]) -> Table:
    table = Table(title="fleet", expand=False)
    for col in ("device", "profile", "online", "model", "state", "p95 ms", "cpu %", "rss MiB", "temp °C", "battery"):
        table.add_column(col, justify="right" if " " in col or col == "battery" else "left", no_wrap=True)
    for d in devices:
        state = d.get("state") or {}
        tel = d.get("last_telemetry") or {}
        model = state.get("active_model") or {}
        latency = tel.get("latency") or {}
        table.add_row(
            d["device_id"],
            d.get("profile", ""),
            "yes" if state.get("online") else "no",
            f"{model.get('name', '-')} v{model['version']}" if model else "-",
            str(state.get("update_state") or "-"),
            _fmt(latency.get("p95_ms"), "{:.2f}"),
            _fmt(tel.get("cpu_percent"), "{:.0f}"),
            _fmt((tel.get("rss_bytes") or 0) / 2**20 if tel.get("rss_bytes") else None, "{:.0f}"),
            _fmt(tel.get("temperature_c"), "{:.1f}"),
            _fmt(tel.get("battery_pct"), "{:.0f}%"),
        )
    return table


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def is_active(device: dict[str, Any]) -> bool:
    state = device.get("state") or {}
    return (
        bool(state.get("online"))
        and state.get("active_model") is not None
        and (state.get("update_state") in (ACTIVE, "idle", None))
    )


def watch_rollout(client: httpx.Client, *, expected: int, timeout: float = 300.0, poll_s: float = 1.0) -> bool:
    """Show the fleet until every device reports an active model (and some telemetry)."""
    progress = Progress(TextColumn("rollout"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    task = progress.add_task("rollout", total=expected)
    deadline = time.monotonic() + timeout
    # Wide enough for the table even when stdout is not a terminal (CI logs, pipes).
    console = Console(width=max(120, shutil.get_terminal_size((120, 40)).columns))
    with Live(refresh_per_second=2, console=console) as live:
        while True:
            # The list carries each device's last state and telemetry: one request per refresh.
            devices = client.get("/api/v1/devices", params={"limit": 1000}).json()
            n_active = sum(is_active(d) for d in devices)
            progress.update(task, completed=n_active)
            live.update(Group(device_rows(devices), progress))
            if n_active >= expected and all(d.get("last_telemetry") for d in devices):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
