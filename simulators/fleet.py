"""A fleet of simulated devices in one process: the real agent, simulated hardware.

Every device is an unmodified :class:`agent.app.Agent` with its own data
directory, MQTT session and device id (``sim-lock-001``, ``sim-car-002``, ...),
a :class:`~simulators.hardware.SimulatedHardware` for its profile, and an
:class:`agent.inference.InferenceLoop` replaying real digits test samples.
The controller is reached only over HTTP (registration, public key) and MQTT;
this package never imports it.

Scale limit: paho-mqtt's network loop uses ``select()``, which cannot watch a
file descriptor numbered 1024 or above. Each agent holds about 3.4 (its socket,
paho's wake-up socket pair, plus download files while an update is running),
and a flaky link holds 2 more, so one process tops out at roughly 250-290
devices. For more, run several ``edgefleet simulate`` processes with different
``--prefix`` values. Measured with 100 devices at 5 Hz on 2 vCPUs: they start
in 3 s, use 344 descriptors, 303 threads, 18 % of one CPU and 188 MB RSS (see
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.profiles import BUILTIN_PROFILES
from shared.topics import DEFAULT_ROOT, validate_device_id
from simulators.hardware import SimulatedHardware

log = logging.getLogger(__name__)

#: Short names used in device ids.
PROFILE_SHORT = {"smart-lock": "lock", "car-ecu": "car", "medical-monitor": "med"}
#: Roughly how many file descriptors one agent holds (see the module docstring).
FDS_PER_AGENT = 3.4
FDS_PER_FLAKY_LINK = 2
SELECT_FD_LIMIT = 1024


class FleetError(Exception):
    """The fleet could not be set up (bad mix, controller unreachable or refusing)."""


@dataclass(frozen=True)
class DeviceSpec:
    device_id: str
    profile: str
    group: str | None = None

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if self.profile not in BUILTIN_PROFILES:
            raise FleetError(f"unknown profile {self.profile!r}; built-in: {', '.join(sorted(BUILTIN_PROFILES))}")


def parse_mix(text: str) -> dict[str, float]:
    """``"smart-lock=2,car-ecu=1"`` -> ``{"smart-lock": 2.0, "car-ecu": 1.0}``."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise FleetError(f"bad weight in mix entry {part!r}") from None
        if name not in BUILTIN_PROFILES:
            raise FleetError(f"unknown profile {name!r} in mix; built-in: {', '.join(sorted(BUILTIN_PROFILES))}")
        if value < 0:
            raise FleetError(f"negative weight in mix entry {part!r}")
        mix[name] = mix.get(name, 0.0) + value
    if not mix or sum(mix.values()) <= 0:
        raise FleetError(f"mix {text!r} has no positive weight")
    return mix


def assign_profiles(n: int, mix: Mapping[str, float]) -> list[str]:
    """Interleave profiles in proportion to ``mix`` (smooth weighted round robin), deterministically."""
    total = sum(mix.values())
    current = dict.fromkeys(mix, 0.0)
    out: list[str] = []
    for _ in range(n):
        for name, weight in mix.items():
            current[name] += weight
        best = max(current, key=lambda k: current[k])
        current[best] -= total
        out.append(best)
    return out


def device_specs(
    n: int, mix: Mapping[str, float], *, prefix: str = "sim", group: str | None = None
) -> list[DeviceSpec]:
    """Specs like ``sim-lock-001``, ``sim-car-002``; the number is the device's index in the fleet."""
    width = max(3, len(str(n)))
    return [
        DeviceSpec(f"{prefix}-{PROFILE_SHORT.get(p, p)}-{i:0{width}d}", p, group)
        for i, p in enumerate(assign_profiles(n, mix), start=1)
    ]


class ControllerClient:
    """The two controller calls a simulated fleet needs, over plain HTTP."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self._httpx = httpx

    def public_key(self) -> str:
        data = self._request("GET", "/api/v1/keys/public")
        try:
            return str(data["public_key_pem"])
        except (KeyError, TypeError):
            raise FleetError("controller's /api/v1/keys/public has no public_key_pem") from None

    def register(self, spec: DeviceSpec) -> None:
        """Create the device; an existing one (409) is fine, so restarts of the fleet are idempotent."""
        body: dict[str, Any] = {"device_id": spec.device_id, "profile": spec.profile}
        if spec.group:
            body["group"] = spec.group
        self._request("POST", "/api/v1/devices", json=body, ok=(200, 201, 409))

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, ok: Sequence[int] = (200,), **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except self._httpx.HTTPError as exc:
            raise FleetError(f"{method} {path}: controller unreachable: {exc}") from exc
        if resp.status_code not in ok:
            raise FleetError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:200]}")
        return resp.json() if resp.content else None


@dataclass
class SimulatedDevice:
    spec: DeviceSpec
    hardware: SimulatedHardware
    agent: Any  # agent.app.Agent (imported lazily so importing this module stays cheap)
    loop: Any = None  # agent.inference.InferenceLoop
    broker_port: int = 0
    data_dir: Path = field(default_factory=Path)
    index: int = 0

    @property
    def device_id(self) -> str:
        return self.spec.device_id


class Fleet:
    """N real agents with simulated hardware, in this process.

    ``public_key_pem`` pins the controller's key; without it and with a
    ``controller_url`` the key comes from the controller; with neither a
    throwaway key is used (the devices then refuse every deployment, which is
    fine for pure load tests of birth/telemetry).

    ``preinstall`` puts the bundled example model for each profile into the
    device's active slot first (version 0, see :mod:`simulators.provision`), so
    devices serve and report latency without a controller. ``agent_overrides``
    are extra :class:`agent.config.AgentSettings` fields for every device
    (``telemetry_interval_s``, ``watch_seconds``, ...).
    """

    def __init__(
        self,
        specs: Sequence[DeviceSpec],
        *,
        broker_host: str,
        broker_port: int,
        topic_root: str = DEFAULT_ROOT,
        data_dir: Path | str | None = None,
        controller_url: str | None = None,
        token: str | None = None,
        public_key_pem: str | None = None,
        rate_hz: float = 5.0,
        seed: int = 0,
        flaky: float = 0.0,
        mean_outage_s: float = 5.0,
        dataset: str = "digits",
        register: bool = True,
        preinstall: bool = False,
        agent_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        if len({s.device_id for s in specs}) != len(specs):
            raise FleetError("duplicate device ids in the fleet")
        fds = len(specs) * (FDS_PER_AGENT + (FDS_PER_FLAKY_LINK if flaky else 0))
        if fds > SELECT_FD_LIMIT - 64:
            raise FleetError(
                f"{len(specs)} devices need about {fds:.0f} file descriptors, beyond what paho's select() loop "
                f"handles in one process ({SELECT_FD_LIMIT}); split the fleet over several processes (--prefix)"
            )
        if fds > 0.75 * SELECT_FD_LIMIT:
            log.warning(
                "%d devices use about %.0f of the %d descriptors paho's select() can watch",
                len(specs),
                fds,
                SELECT_FD_LIMIT,
            )
        self.specs = list(specs)
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.topic_root = topic_root
        self._own_dir = data_dir is None
        #: Where each device's data dir lives; a temp dir made by ``start`` (and removed by ``stop``) if not given.
        self.data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self.controller_url = controller_url
        self.token = token
        self.public_key_pem = public_key_pem
        self.rate_hz = rate_hz
        self.seed = seed
        self.flaky = flaky
        self.mean_outage_s = mean_outage_s
        self.dataset = dataset
        self.register = register
        self.preinstall = preinstall
        self.agent_overrides = dict(agent_overrides or {})
        self.devices: list[SimulatedDevice] = []
        self.started_at: float | None = None
        self._proxy: Any = None
        self._x: np.ndarray = np.empty((0, 64), np.float32)

    @classmethod
    def from_mix(
        cls, n: int, mix: Mapping[str, float] | str, *, prefix: str = "sim", group: str | None = None, **kwargs: Any
    ) -> Fleet:
        """``Fleet.from_mix(30, "smart-lock=1,car-ecu=1,medical-monitor=1", broker_host=..., broker_port=...)``."""
        weights = parse_mix(mix) if isinstance(mix, str) else dict(mix)
        return cls(device_specs(n, weights, prefix=prefix, group=group), **kwargs)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Register (if a controller is given), then start every agent and its inference loop."""
        self._provision()
        x = self._x = self._samples()
        try:
            for index, spec in enumerate(self.specs):
                self.devices.append(self._start_device(index, spec, x))
        except BaseException:
            self.stop()
            raise
        self.started_at = time.monotonic()

    def stop(self) -> None:
        """Stop loops, then agents (each publishes its offline state); safe to call twice."""
        for dev in self.devices:
            if dev.loop is not None:
                with contextlib.suppress(Exception):
                    dev.loop.stop()
        threads = [threading.Thread(target=_quiet_stop, args=(d.agent,), daemon=True) for d in self.devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)
        self.devices = []
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[SimulatedDevice]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    def device(self, device_id: str) -> SimulatedDevice:
        for dev in self.devices:
            if dev.device_id == device_id:
                return dev
        raise KeyError(device_id)

    def restart_device(self, device_id: str, *, kill: bool = False) -> SimulatedDevice:
        """Stop one device's agent and start a fresh one on the same data dir (an agent restart).

        ``kill`` skips the clean stop, so no offline state is published and the
        broker's Will fires when the old session's socket is dropped: the
        closest an in-process fleet gets to a crashed device.
        """
        i = next(i for i, d in enumerate(self.devices) if d.device_id == device_id)
        old = self.devices[i]
        if old.loop is not None:
            old.loop.stop()
        if kill:
            _crash(old.agent)
        else:
            old.agent.stop()
        self.devices[i] = self._start_device(old.index, old.spec, self._x, previous=old)
        return self.devices[i]

    # -- observation -------------------------------------------------------------
    def statuses(self) -> dict[str, dict[str, Any]]:
        """``agent.status()`` of every device, keyed by device id."""
        out: dict[str, dict[str, Any]] = {}
        for dev in self.devices:
            try:
                out[dev.device_id] = _as_dict(dev.agent.status())
            except Exception as exc:  # a status call must never take the fleet down
                out[dev.device_id] = {"error": repr(exc)}
        return out

    def summary(self) -> str:
        """One line: devices online, update states, active models, inferences and their rate."""
        statuses = self.statuses()
        online = sum(1 for s in statuses.values() if s.get("connected"))
        states = Counter(str(s.get("phase", "?")) for s in statuses.values())
        models = Counter(_model_label(s) for s in statuses.values())
        inferences = sum(d.hardware.inferences for d in self.devices)
        elapsed = time.monotonic() - self.started_at if self.started_at else 0.0
        rate = inferences / elapsed if elapsed > 0 else 0.0
        return (
            f"{len(self.devices)} devices, {online} online | "
            + " ".join(f"{k}={v}" for k, v in sorted(states.items()))
            + " | models "
            + " ".join(f"{k}:{v}" for k, v in sorted(models.items()))
            + f" | {inferences} inferences ({rate:.0f}/s)"
            + _footprint()
        )

    # -- internals ---------------------------------------------------------------
    def _provision(self) -> None:
        client = ControllerClient(self.controller_url, self.token) if self.controller_url else None
        try:
            if self.public_key_pem is None:
                self.public_key_pem = client.public_key() if client else _throwaway_public_key()
            if client and self.register:
                for spec in self.specs:
                    client.register(spec)
        finally:
            if client:
                client.close()

    def _samples(self) -> np.ndarray:
        from simulators.examples import load_dataset

        x, _ = load_dataset(self.dataset)
        return x

    def _start_device(
        self, index: int, spec: DeviceSpec, x: np.ndarray, previous: SimulatedDevice | None = None
    ) -> SimulatedDevice:
        from agent.app import Agent
        from agent.config import AgentSettings

        if previous is not None:  # a restart: same hardware (battery, link schedule), same proxy port
            hw, port = previous.hardware, previous.broker_port
        else:
            hw = SimulatedHardware(
                spec.profile, seed=self.seed * 100_003 + index, flaky=self.flaky, mean_outage_s=self.mean_outage_s
            )
            port = self.broker_port
        if self.flaky > 0 and previous is None:
            if self._proxy is None:
                from simulators.link import LinkProxy

                self._proxy = LinkProxy(self.broker_host, self.broker_port)
            port = self._proxy.add(hw.link_up)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="edgefleet-fleet-"))
        data_dir = self.data_dir / spec.device_id
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.preinstall and not (data_dir / "active.json").exists():
            from simulators.provision import example_model_for, preinstall_model

            preinstall_model(data_dir, *example_model_for(spec.profile))
        settings = AgentSettings(
            device_id=spec.device_id,
            profile=spec.profile,
            broker_host=self.broker_host if self.flaky <= 0 else "127.0.0.1",
            broker_port=port,
            topic_root=self.topic_root,
            data_dir=data_dir,
            controller_public_key=self.public_key_pem,
            **self.agent_overrides,
        )
        agent = Agent(settings, hardware=hw)
        agent.start()
        dev = SimulatedDevice(spec=spec, hardware=hw, agent=agent, broker_port=port, data_dir=data_dir, index=index)
        if self.rate_hz > 0:
            dev.loop = _start_inference(agent, np.roll(x, -(index * 37) % len(x), axis=0), self.rate_hz)
        return dev


def _start_inference(agent: Any, x: np.ndarray, rate_hz: float) -> Any:
    from agent.inference import InferenceLoop
    from agent.sources import ReplaySource

    loop = InferenceLoop(agent, ReplaySource(x, rate_hz))
    loop.start()
    return loop


def _crash(agent: Any) -> None:
    """Drop the agent's connection without DISCONNECT and stop its threads (best effort, agent internals)."""
    session = getattr(agent, "_session", None)
    client = getattr(session, "_client", None)
    sock = client.socket() if client is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            import socket

            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        agent.stop()


def _footprint() -> str:
    """This process's descriptors, threads and RSS (Linux); the select() limit makes the first one matter."""
    try:
        fds = len(os.listdir("/proc/self/fd"))
        threads = len(os.listdir("/proc/self/task"))
        status = Path("/proc/self/status").read_text().splitlines()
        rss_kib = next(int(ln.split()[1]) for ln in status if ln.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return ""
    return f" | {fds} fds, {threads} threads, {rss_kib / 1024:.0f} MiB RSS"


def _quiet_stop(agent: Any) -> None:
    try:
        agent.stop()
    except Exception:
        log.exception("agent stop failed")


def _as_dict(status: Any) -> dict[str, Any]:
    if isinstance(status, dict):
        return status
    if hasattr(status, "model_dump"):
        return dict(status.model_dump())
    if hasattr(status, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(status)
    return dict(vars(status))


def _model_label(status: Mapping[str, Any]) -> str:
    model = status.get("active_model")
    if not model:
        return "none"
    if not isinstance(model, Mapping):
        model = _as_dict(model)
    return f"{model.get('name', '?')}@v{model.get('version', '?')}"


def _throwaway_public_key() -> str:
    from shared.signing import generate_private_key, public_key_pem

    log.warning("no controller and no public key: using a throwaway key; devices will refuse every deployment")
    return public_key_pem(generate_private_key().public_key())


def split_host_port(text: str, default_port: int = 1883) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host.strip("[]") or "127.0.0.1", int(port)


def simulate_command(args: argparse.Namespace) -> int:
    """``edgefleet simulate``: run the fleet until Ctrl-C, printing one summary line every few seconds."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # N agents' connect/disconnect lines would drown the summary; it counts who is online.
    logging.getLogger("edgefleet.agent").setLevel(logging.WARNING)
    host, port = split_host_port(args.broker)
    try:
        fleet = Fleet.from_mix(
            args.devices,
            args.mix,
            prefix=args.prefix,
            group=getattr(args, "group", None) or args.prefix,
            broker_host=host,
            broker_port=port,
            topic_root=args.topic_root,
            controller_url=args.controller or None,
            token=args.token,
            rate_hz=args.rate,
            seed=getattr(args, "seed", 0) or 0,
            flaky=getattr(args, "flaky", 0.0) or 0.0,
            data_dir=getattr(args, "data_dir", None),
            preinstall=bool(getattr(args, "preinstall", False)),
        )
        print(f"starting {len(fleet.specs)} devices against {args.broker} (root {args.topic_root})", flush=True)
        fleet.start()
    except FleetError as exc:
        print(f"error: {exc}")
        return 2
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(getattr(args, "summary_interval", 5.0) or 5.0):
            print(time.strftime("%H:%M:%S"), fleet.summary(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        print("stopping fleet ...", flush=True)
        fleet.stop()
    return 0


__all__ = [
    "ControllerClient",
    "DeviceSpec",
    "Fleet",
    "FleetError",
    "SimulatedDevice",
    "assign_profiles",
    "device_specs",
    "parse_mix",
    "simulate_command",
    "split_host_port",
]
