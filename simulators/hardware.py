"""Simulated device hardware behind the agent's ``Hardware`` hook.

The agent code is the real one; only what a laptop cannot be is faked here:
a slower CPU (``after_inference`` sleeps so one inference takes
``profile.compute_slowdown`` times as long as it took on this machine), the
device's own memory, temperature and battery readings, and an unreliable link
(:meth:`SimulatedHardware.link_up`, enforced by :mod:`simulators.link`).

Readings are a deterministic function of the seed and of the load the agent
actually put on the device, so two runs with the same seed drift alike.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.profiles import DeviceProfile, get_profile


@dataclass(frozen=True)
class HardwareTraits:
    """What the readings of one kind of device look like."""

    base_rss_bytes: int
    ambient_c: float
    #: Degrees above ambient at 100 % CPU, reached with time constant ``thermal_tau_s``.
    heat_c: float
    thermal_tau_s: float
    idle_cpu_percent: float
    #: Battery drain in percentage points per hour while idle, and per inference.
    battery_idle_pct_h: float | None = None
    battery_pct_per_inference: float = 0.0


TRAITS: dict[str, HardwareTraits] = {
    "smart-lock": HardwareTraits(
        base_rss_bytes=6 * 1024 * 1024,
        ambient_c=22.0,
        heat_c=18.0,
        thermal_tau_s=60.0,
        idle_cpu_percent=1.0,
        battery_idle_pct_h=0.5,
        battery_pct_per_inference=0.0005,
    ),
    "car-ecu": HardwareTraits(
        base_rss_bytes=40 * 1024 * 1024,
        ambient_c=45.0,
        heat_c=30.0,
        thermal_tau_s=30.0,
        idle_cpu_percent=4.0,
    ),
    "medical-monitor": HardwareTraits(
        base_rss_bytes=64 * 1024 * 1024,
        ambient_c=30.0,
        heat_c=15.0,
        thermal_tau_s=45.0,
        idle_cpu_percent=2.0,
    ),
}
DEFAULT_TRAITS = HardwareTraits(
    base_rss_bytes=32 * 1024 * 1024, ambient_c=30.0, heat_c=20.0, thermal_tau_s=45.0, idle_cpu_percent=2.0
)


class SimulatedHardware:
    """One simulated device; thread-safe (the inference loop and the telemetry thread both call it).

    ``flaky`` is the long-run fraction of time the link is down, as alternating
    up/down periods with exponential lengths around ``mean_outage_s``.
    """

    def __init__(
        self,
        profile: DeviceProfile | str,
        seed: int = 0,
        *,
        flaky: float = 0.0,
        mean_outage_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= flaky < 1.0:
            raise ValueError(f"flaky must be in [0, 1), got {flaky}")
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.slowdown = float(self.profile.compute_slowdown)
        self.traits = TRAITS.get(self.profile.name, DEFAULT_TRAITS)
        self.flaky = flaky
        self.mean_outage_s = mean_outage_s
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(f"{seed}:{self.profile.name}")
        self._lock = threading.Lock()
        start = clock()
        self._t_last = start
        self._busy_s = 0.0  # emulated compute time since the last reading
        self._cpu = self.traits.idle_cpu_percent
        self._temp = self.traits.ambient_c + self._rng.uniform(-1.0, 1.0)
        self._rss_jitter = 0
        self._battery = self._rng.uniform(60.0, 100.0) if self.traits.battery_idle_pct_h is not None else None
        self.inferences = 0
        self.slept_s = 0.0
        # Flaky link schedule: the link is up until _link_flip, then flips.
        self._link_is_up = True
        self._link_flip = start + self._next_period(up=True)

    # -- the agent's Hardware hook ---------------------------------------------
    def after_inference(self, elapsed_s: float) -> float:
        """Stretch one inference to what the device would take; returns that latency.

        ``elapsed_s`` is the CPU time this host spent on the inference (the agent
        measures thread time), so host scheduling noise and other simulated
        devices' GIL holds are not multiplied into the device's latency. The
        sleep paces the device like the real one would; the returned figure is
        the device's latency, independent of how busy this host is.
        """
        extra = max(0.0, (self.slowdown - 1.0) * elapsed_s)
        with self._lock:
            self.inferences += 1
            self._busy_s += elapsed_s + extra
            if self._battery is not None:
                self._battery = max(0.0, self._battery - self.traits.battery_pct_per_inference)
            self.slept_s += extra
        if extra > 0:
            self._sleep(extra)
        return elapsed_s + extra

    def cpu_percent(self) -> float:
        with self._lock:
            self._advance()
            return round(self._cpu, 1)

    def rss_bytes(self) -> int:
        with self._lock:
            self._advance()
            return self.traits.base_rss_bytes + self._rss_jitter

    def temperature_c(self) -> float:
        with self._lock:
            self._advance()
            return round(self._temp, 2)

    def battery_pct(self) -> float | None:
        with self._lock:
            self._advance()
            return None if self._battery is None else round(self._battery, 3)

    # -- flaky link -------------------------------------------------------------
    def link_up(self) -> bool:
        """Whether the device's network link is up right now (always True unless ``flaky``)."""
        if self.flaky <= 0.0:
            return True
        with self._lock:
            now = self._clock()
            while now >= self._link_flip:
                self._link_is_up = not self._link_is_up
                self._link_flip += self._next_period(up=self._link_is_up)
            return self._link_is_up

    def _next_period(self, *, up: bool) -> float:
        if self.flaky <= 0.0:
            return math.inf
        mean = self.mean_outage_s if not up else self.mean_outage_s * (1.0 - self.flaky) / self.flaky
        return self._rng.expovariate(1.0 / mean)

    # -- internals --------------------------------------------------------------
    def _advance(self) -> None:
        """Fold the load since the last reading into CPU, temperature, battery (lock held)."""
        now = self._clock()
        dt = now - self._t_last
        if dt <= 0:
            return
        self._t_last = now
        busy, self._busy_s = self._busy_s, 0.0
        load = min(100.0, 100.0 * busy / dt)
        self._cpu = max(0.0, min(100.0, self.traits.idle_cpu_percent + load + self._rng.gauss(0.0, 0.5)))
        target = self.traits.ambient_c + self.traits.heat_c * self._cpu / 100.0
        alpha = 1.0 - math.exp(-dt / self.traits.thermal_tau_s)
        self._temp += (target - self._temp) * alpha + self._rng.gauss(0.0, 0.05)
        step = int(self._rng.gauss(0.0, 16 * 1024))
        self._rss_jitter = max(-512 * 1024, min(2 * 1024 * 1024, self._rss_jitter + step))
        if self._battery is not None and self.traits.battery_idle_pct_h is not None:
            self._battery = max(0.0, self._battery - self.traits.battery_idle_pct_h * dt / 3600.0)


__all__ = ["DEFAULT_TRAITS", "TRAITS", "HardwareTraits", "SimulatedHardware"]
