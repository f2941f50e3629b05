"""SimulatedHardware: the slowdown is really applied, readings are plausible and seeded."""

from __future__ import annotations

import time

import pytest

from shared.profiles import DeviceProfile, get_profile
from simulators.hardware import SimulatedHardware


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


@pytest.mark.parametrize("profile", ["smart-lock", "car-ecu", "medical-monitor"])
def test_after_inference_sleeps_slowdown_minus_one_times_elapsed(profile: str) -> None:
    clock = FakeClock()
    hw = SimulatedHardware(profile, seed=1, sleep=clock.sleep, clock=clock)
    hw.after_inference(0.002)
    expected = (get_profile(profile).compute_slowdown - 1) * 0.002
    assert clock.slept == [pytest.approx(expected)]
    assert hw.inferences == 1


def test_slowdown_is_measurable_in_wall_time() -> None:
    """A real sleep: one 5 ms 'inference' on a smart lock (20x) takes about 100 ms end to end."""
    hw = SimulatedHardware("smart-lock", seed=0)
    t0 = time.perf_counter()
    work = 0.005
    time.sleep(work)
    hw.after_inference(time.perf_counter() - t0)
    total = time.perf_counter() - t0
    assert total >= 20 * work * 0.95
    assert total < 20 * work * 3


def test_car_is_faster_than_monitor_is_faster_than_lock() -> None:
    slept = {}
    for name in ("car-ecu", "medical-monitor", "smart-lock"):
        clock = FakeClock()
        SimulatedHardware(name, sleep=clock.sleep, clock=clock).after_inference(0.001)
        slept[name] = clock.slept[0]
    assert slept["car-ecu"] < slept["medical-monitor"] < slept["smart-lock"]


def test_readings_are_plausible_and_respond_to_load() -> None:
    clock = FakeClock()
    hw = SimulatedHardware("car-ecu", seed=3, sleep=clock.sleep, clock=clock)
    clock.t += 10
    idle_cpu, idle_temp = hw.cpu_percent(), hw.temperature_c()
    assert 0 <= idle_cpu < 10
    for _ in range(120):  # two minutes at ~50 % duty cycle
        hw.after_inference(0.2)  # +0.1 s sleep (1.5x)
        clock.t += 0.2
        hw.cpu_percent()
    assert hw.cpu_percent() > 40
    assert hw.temperature_c() > idle_temp + 5
    assert 30 * 1024 * 1024 < hw.rss_bytes() < 64 * 1024 * 1024
    assert hw.battery_pct() is None  # mains-powered


def test_smart_lock_battery_drains() -> None:
    clock = FakeClock()
    hw = SimulatedHardware("smart-lock", seed=4, sleep=clock.sleep, clock=clock)
    start = hw.battery_pct()
    assert start is not None and 0 < start <= 100
    clock.t += 3600
    for _ in range(1000):
        hw.after_inference(0.001)
    end = hw.battery_pct()
    assert end is not None and end < start - 0.5


def test_same_seed_same_readings() -> None:
    def readings(seed: int) -> list[float]:
        clock = FakeClock()
        hw = SimulatedHardware("medical-monitor", seed=seed, sleep=clock.sleep, clock=clock)
        out = []
        for _ in range(5):
            clock.t += 1
            out += [hw.cpu_percent(), hw.temperature_c(), float(hw.rss_bytes())]
        return out

    assert readings(7) == readings(7)
    assert readings(7) != readings(8)


def test_link_is_reliable_by_default() -> None:
    clock = FakeClock()
    hw = SimulatedHardware("car-ecu", sleep=clock.sleep, clock=clock)
    for _ in range(100):
        clock.t += 10
        assert hw.link_up()


def test_flaky_link_is_down_about_the_requested_fraction() -> None:
    clock = FakeClock()
    hw = SimulatedHardware("car-ecu", seed=5, flaky=0.2, mean_outage_s=2.0, sleep=clock.sleep, clock=clock)
    samples = []
    for _ in range(20000):
        clock.t += 0.5
        samples.append(hw.link_up())
    down = 1 - sum(samples) / len(samples)
    assert 0.12 < down < 0.28


def test_flaky_must_be_a_fraction() -> None:
    with pytest.raises(ValueError):
        SimulatedHardware("car-ecu", flaky=1.0)


def test_device_latency_is_compute_times_slowdown() -> None:
    """The device's latency comes from this host's compute time, stretched by the profile's slowdown."""
    clock = FakeClock()
    hw = SimulatedHardware("smart-lock", seed=0, sleep=clock.sleep, clock=clock)
    latency = hw.after_inference(0.001)
    assert latency == pytest.approx(20 * 0.001)
    assert clock.slept[-1] == pytest.approx(19 * 0.001)
    assert hw.slept_s == pytest.approx(19 * 0.001)


def test_no_slowdown_no_sleep() -> None:
    clock = FakeClock()
    hw = SimulatedHardware(DeviceProfile(**{**get_profile("car-ecu").model_dump(), "compute_slowdown": 1.0}),
                           sleep=clock.sleep, clock=clock)
    assert hw.after_inference(0.002) == pytest.approx(0.002)
    assert not clock.slept
