"""The hardware hook: what the agent asks of the device it runs on.

Simulated devices implement :class:`Hardware` to emulate a slower CPU (sleep in
``after_inference``), a battery or a hot SoC; :class:`HostHardware` reads the
real host through /proc and /sys, and is cheap enough to call every interval.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Hardware(Protocol):
    def after_inference(self, elapsed_s: float) -> float | None:
        """Called after every inference; a simulator sleeps here to emulate a slower CPU.

        ``elapsed_s`` is the CPU time the inference thread spent (not wall time:
        many simulated devices share a host, and one device's compute must not
        count another's GIL wait). Returns the latency the emulated device would
        see, or None to record the measured time as it is.
        """

    def cpu_percent(self) -> float | None: ...

    def rss_bytes(self) -> int | None: ...

    def temperature_c(self) -> float | None: ...

    def battery_pct(self) -> float | None: ...


_THERMAL = Path("/sys/class/thermal")


class HostHardware:
    """The machine the agent really runs on."""

    def __init__(self) -> None:
        self._clock_ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._last_cpu = self._process_cpu_s()
        self._last_wall = time.monotonic()

    def after_inference(self, elapsed_s: float) -> float | None:
        """Nothing to emulate on real hardware (and never called: the agent skips it)."""
        return None

    def cpu_percent(self) -> float | None:
        """CPU used by this process since the previous call, in percent of one core."""
        cpu, wall = self._process_cpu_s(), time.monotonic()
        if cpu is None or self._last_cpu is None:
            return None
        d_wall = wall - self._last_wall
        pct = 100.0 * (cpu - self._last_cpu) / d_wall if d_wall > 0 else 0.0
        self._last_cpu, self._last_wall = cpu, wall
        return max(pct, 0.0)

    def rss_bytes(self) -> int | None:
        try:
            fields = Path("/proc/self/statm").read_text().split()
            return int(fields[1]) * self._page_size
        except (OSError, IndexError, ValueError):
            # ru_maxrss is the peak, not current, but better than nothing off Linux.
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def temperature_c(self) -> float | None:
        """Hottest thermal zone, or None where the kernel exposes none (containers, VMs)."""
        temps: list[float] = []
        for zone in _THERMAL.glob("thermal_zone*/temp"):
            try:
                temps.append(int(zone.read_text().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
        return max(temps) if temps else None

    def battery_pct(self) -> float | None:
        return None

    def _process_cpu_s(self) -> float | None:
        try:
            stat = Path("/proc/self/stat").read_text()
            # The command name may contain spaces; fields after ')' are fixed.
            fields = stat.rsplit(")", 1)[1].split()
            utime, stime = int(fields[11]), int(fields[12])
            return (utime + stime) / self._clock_ticks
        except (OSError, IndexError, ValueError):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime


__all__ = ["Hardware", "HostHardware"]
