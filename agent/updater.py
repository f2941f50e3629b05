"""The update state machine: does the IO and decides what each failure means.

``idle → downloading → verifying → self_testing → switching → watching → active``

Runs on the agent's worker thread only, so it needs no locks; paho callbacks
reach it through the inbox.  Every step emits an :class:`Event` carrying the
deployment id.  A refusal before download is ``rejected``; a failure after it
is ``failed`` — in both cases the running model keeps serving, and the
(deployment, sha256) pair is remembered so a retained manifest re-delivered
after a reconnect does not loop through the same failure.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from agent import verifier
from agent.config import AgentSettings
from agent.counters import DropCounters
from agent.download import Download, cleanup, decode_wire
from agent.runtimes import Model, load_model
from agent.selftest import run_self_test
from agent.slots import SlotInfo, Slots
from agent.storage import atomic_write_json, read_json
from agent.telemetry import LatencyRecorder, Mark, Window, window_since
from shared import codec
from shared.blocks import decode_block
from shared.errors import EdgefleetError, ModelLoadError, ProtocolError, RemoteDataError, VerificationError
from shared.messages import BlockRequest, Command, CommandKind, DesiredState, Event, EventKind, ModelRef

log = logging.getLogger("edgefleet.agent.updater")

#: The watch phase judges early only once it has this many inferences to judge.
MIN_WATCH_SAMPLES = 20
REFUSED_KEEP = 64


class Phase(str, Enum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    SELF_TESTING = "self_testing"
    SWITCHING = "switching"
    WATCHING = "watching"
    ACTIVE = "active"


class Link(Protocol):
    """What the updater needs from the MQTT session."""

    @property
    def connected(self) -> bool: ...

    def publish_event(self, event: Event) -> None: ...
    def request_blocks(self, request: BlockRequest) -> None: ...
    def subscribe_artifact(self, wire_sha256: str) -> None: ...
    def unsubscribe_artifact(self, wire_sha256: str) -> None: ...
    def publish_state(self) -> None: ...


class Serving(Protocol):
    """What the updater needs from the agent that serves predictions."""

    recorder: LatencyRecorder

    def current_model(self) -> Model | None: ...
    def swap_model(self, model: Model | None, ref: ModelRef | None) -> None: ...
    def set_telemetry_interval(self, seconds: float) -> None: ...


@dataclass
class _Watch:
    manifest: DesiredState
    deadline: float
    mark: Mark
    previous: tuple[Model, ModelRef] | None


def reason_of(exc: BaseException) -> str:
    """The short code that goes into a failure event."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    if isinstance(exc, ProtocolError):
        return "malformed"
    return "io_error" if isinstance(exc, OSError) else "internal_error"


def refusal_key(deployment_id: str, sha256: str) -> str:
    return f"{deployment_id}:{sha256}"


class Updater:
    def __init__(
        self,
        *,
        settings: AgentSettings,
        ctx: verifier.TrustContext,
        slots: Slots,
        link: Link,
        serving: Serving,
        drops: DropCounters,
    ) -> None:
        self._settings = settings
        self._ctx = ctx
        self._profile = settings.device_profile()
        self._slots = slots
        self._link = link
        self._serving = serving
        self._drops = drops
        self._downloads_dir = Path(settings.data_dir) / "downloads"
        self._refused_path = Path(settings.data_dir) / "refused.json"
        self._refused: deque[str] = deque(self._load_refused(), maxlen=REFUSED_KEEP)
        self._seen_commands: deque[str] = deque(maxlen=256)
        self.phase = Phase.IDLE
        self.active: SlotInfo | None = None
        self.download: Download | None = None
        self._watch: _Watch | None = None
        self._repair_due = 0.0
        self.block_requests = 0
        self.requested_blocks = 0
        #: (monotonic time, blocks asked for) of recent requests, for status and tests.
        self.request_log: deque[tuple[float, int]] = deque(maxlen=64)

    # -- startup -------------------------------------------------------------------------
    def restore(self) -> None:
        """Serve what active.json names; if it cannot load, fall back to the previous slot."""
        for info in (self._slots.active(), self._slots.previous()):
            if info is None:
                continue
            try:
                model = self._load(info)
            except ModelLoadError as exc:
                log.error("cannot load slot %s (%s): %s", info.slot, info.model.name, exc)
                continue
            if info != self._slots.active():
                self._slots.rollback()
            self._serve(model, info)
            return

    # -- desired state -----------------------------------------------------------------------
    def on_desired(self, payload: bytes) -> None:
        if not payload:
            return  # the controller cleared this device's desired state
        try:
            manifest = codec.decode(payload, DesiredState)
        except ProtocolError as exc:
            self._drops.drop("desired", "malformed", exc)
            return
        if self._already_handling(manifest):
            return
        if refusal_key(manifest.deployment_id, manifest.sha256) in self._refused:
            log.info("ignoring desired %s: refused before", manifest.deployment_id)
            return
        try:
            verifier.verify_manifest(manifest, self._ctx, active=self._active_ref(), now=time.time())
        except VerificationError as exc:
            self._refuse(manifest, EventKind.REJECTED, exc)
            return
        if self._watch is not None:
            self._end_watch_accept()
        self._start_download(manifest)

    def _already_handling(self, manifest: DesiredState) -> bool:
        """Idempotence: the active, watched or downloading model needs no new work."""
        if self.download is not None and self.download.manifest == manifest:
            self._request_missing()
            return True
        if self._watch is not None and self._watch.manifest.model == manifest.model:
            return True
        return self.download is None and self._active_ref() == manifest.model

    # -- download ----------------------------------------------------------------------------
    def _start_download(self, manifest: DesiredState) -> None:
        if self.download is not None:
            quiet = self.download.manifest.deployment_id == manifest.deployment_id  # re-signed, same rollout
            self._abandon_download("superseded by deployment " + manifest.deployment_id, quiet=quiet)
        dl = Download(manifest, self._downloads_dir)
        self.download = dl
        self._set_phase(Phase.DOWNLOADING)
        detail = f"resuming with {dl.resumed_blocks}/{dl.count} blocks" if dl.resumed_blocks else None
        self._event(EventKind.DOWNLOADING, manifest, progress=dl.received / dl.count, detail=detail)
        self._link.subscribe_artifact(manifest.wire_sha256)
        if dl.complete:
            self._finish_download()
        else:
            self._request_missing()

    def _abandon_download(self, why: str, *, quiet: bool = False) -> None:
        """Stop fetching; the files stay, so a manifest for the same artifact resumes from them."""
        dl = self.download
        assert dl is not None
        dl.close()
        self._link.unsubscribe_artifact(dl.sha)
        self.download = None
        if not quiet:
            self._event(EventKind.FAILED, dl.manifest, reason="superseded", detail=why)

    def _request_missing(self) -> None:
        """Ask for every missing range now, and schedule the next repair if nothing arrives."""
        dl = self.download
        if dl is None:
            return
        ranges = dl.missing_ranges()
        self._schedule_repair()
        if not ranges or not self._link.connected:
            return
        request = BlockRequest(
            device_id=self._ctx.device_id, sha256=dl.sha, ranges=ranges, request_id=uuid.uuid4().hex[:12]
        )
        self._link.request_blocks(request)
        asked = sum(end - start for start, end in ranges)
        self.block_requests += 1
        self.requested_blocks += asked
        self.request_log.append((time.monotonic(), asked))

    def _schedule_repair(self) -> None:
        self._repair_due = time.monotonic() + self._settings.repair_timeout_s * random.uniform(0.8, 1.2)

    def on_block(self, payload: bytes, source: str, topic_sha: str | None = None) -> None:
        try:
            block = decode_block(payload)
        except ProtocolError as exc:
            self._drops.drop(source, "malformed", exc)
            return
        dl = self.download
        if dl is None:
            self._drops.drop(source, "no_download", f"block {block.index} of {block.sha256[:12]}")
            return
        if topic_sha is not None and topic_sha != block.sha256:
            self._drops.drop(source, "topic_mismatch", f"block of {block.sha256[:12]} on topic of {topic_sha[:12]}")
            return
        try:
            is_new = dl.accept(block)
        except ProtocolError as exc:
            self._drops.drop(source, "mismatch", exc)
            return
        except OSError as exc:  # disk full, read-only or failing storage
            self._stop_on_io_error(dl, exc)
            return
        if is_new:
            self._schedule_repair()
            if dl.complete:
                self._finish_download()

    def _stop_on_io_error(self, dl: Download, exc: OSError) -> None:
        """Stop fetching, keep what is on disk for a later resume, report ``io_error``; the old model serves on."""
        log.error("download of %s stopped: %s", dl.sha[:12], exc)
        self.download = None
        self._link.unsubscribe_artifact(dl.sha)
        with contextlib.suppress(OSError):
            dl.close()
        self._fail_install(dl.manifest, exc)

    def on_connected(self) -> None:
        """After (re)connect the broker forgot our subscriptions and in-flight blocks: ask again now."""
        if self.download is not None:
            self._link.subscribe_artifact(self.download.sha)
            self._request_missing()

    # -- install ---------------------------------------------------------------------------------
    def _finish_download(self) -> None:
        dl = self.download
        assert dl is not None
        manifest = dl.manifest
        self.download = None
        self._link.unsubscribe_artifact(dl.sha)
        try:
            self._install(manifest, dl)
        except (RemoteDataError, ModelLoadError, OSError) as exc:
            dl.discard()
            self._fail_install(manifest, exc)
        else:
            dl.discard()
            cleanup(self._downloads_dir)

    def _install(self, manifest: DesiredState, dl: Download) -> None:
        self._set_phase(Phase.VERIFYING)
        self._event(EventKind.VERIFYING, manifest)
        wire = dl.read_wire()
        verifier.verify_wire(manifest, wire)
        data = decode_wire(manifest, wire)
        verifier.verify_artifact(manifest, data)
        self._set_phase(Phase.SELF_TESTING)
        self._event(EventKind.SELF_TESTING, manifest)
        info = self._slots.stage(
            model=manifest.model, runtime=manifest.runtime, deployment_id=manifest.deployment_id, data=data
        )
        model = self._load(info)
        run_self_test(model, manifest.self_test)
        self._set_phase(Phase.SWITCHING)
        self._event(EventKind.SWITCHING, manifest)
        previous = self._current()
        self._slots.activate(info.slot)
        self._serve(model, info)
        self._link.publish_state()
        if self._profile.watch_seconds > 0:
            self._begin_watch(manifest, previous)
        else:
            self._declare_active(manifest)

    def _fail_install(self, manifest: DesiredState, exc: EdgefleetError | OSError) -> None:
        """Old model keeps serving; bad data is remembered, a transient disk error is not."""
        if isinstance(exc, EdgefleetError):
            self._refuse(manifest, EventKind.FAILED, exc)
        else:
            self._event(EventKind.FAILED, manifest, reason=reason_of(exc), detail=str(exc))
        self._set_phase(Phase.ACTIVE if self.active else Phase.IDLE)

    # -- watch -------------------------------------------------------------------------------------
    def _begin_watch(self, manifest: DesiredState, previous: tuple[Model, ModelRef] | None) -> None:
        self._set_phase(Phase.WATCHING)
        deadline = time.monotonic() + self._profile.watch_seconds
        self._watch = _Watch(manifest, deadline, Mark.now(self._serving.recorder), previous)
        self._event(EventKind.WATCHING, manifest, detail=f"{self._profile.watch_seconds:g}s")

    def _check_watch(self, now: float) -> None:
        watch = self._watch
        assert watch is not None
        window = window_since(self._serving.recorder, watch.mark)
        breach = self._breach(window)
        judged = window.count + window.errors >= MIN_WATCH_SAMPLES
        if breach is not None and (judged or now >= watch.deadline):
            self._roll_back_watch(*breach)
        elif now >= watch.deadline:
            self._end_watch_accept()

    def _breach(self, window: Window) -> tuple[str, str] | None:
        """Which budget the new model breaks in the field (latency includes the hardware hook)."""
        p = self._profile
        if window.error_rate > p.max_error_rate:
            return "error_rate", f"error rate {window.error_rate:.3f} > {p.max_error_rate:.3f}"
        if window.latency is not None and window.latency.p95_ms > p.p95_latency_ms:
            return "p95_latency", f"p95 {window.latency.p95_ms:.2f} ms > {p.p95_latency_ms:.2f} ms"
        return None

    def _end_watch_accept(self) -> None:
        watch = self._watch
        assert watch is not None
        self._watch = None
        self._declare_active(watch.manifest)

    def _roll_back_watch(self, reason: str, detail: str) -> None:
        watch = self._watch
        assert watch is not None
        self._watch = None
        self._remember_refused(refusal_key(watch.manifest.deployment_id, watch.manifest.sha256))
        if watch.previous is not None and self._slots.previous() is not None:
            self._slots.rollback()
            model, _ = watch.previous
            self._serve(model, self._slots.active())
        else:
            self._slots.clear_active()
            self._serve(None, None)
        self._set_phase(Phase.ACTIVE if self.active else Phase.IDLE)
        self._event(EventKind.ROLLED_BACK, watch.manifest, reason=reason, detail=detail)
        self._link.publish_state()

    def _declare_active(self, manifest: DesiredState) -> None:
        self._set_phase(Phase.ACTIVE)
        self._event(EventKind.ACTIVE, manifest)
        self._link.publish_state()

    # -- periodic ------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        if self.download is not None and now >= self._repair_due:
            self._request_missing()
        if self._watch is not None:
            self._check_watch(now)

    # -- commands --------------------------------------------------------------------------------------
    def on_command(self, payload: bytes) -> None:
        try:
            command = codec.decode(payload, Command)
        except ProtocolError as exc:
            self._drops.drop("commands", "malformed", exc)
            return
        if command.command_id in self._seen_commands:
            return  # QoS 1 may deliver twice
        self._seen_commands.append(command.command_id)
        try:
            verifier.verify_command(command, self._ctx, now=time.time())
            detail = self._execute(command)
        except (RemoteDataError, ModelLoadError) as exc:
            self._command_event(command, EventKind.REJECTED, reason=reason_of(exc), detail=str(exc))
            return
        self._command_event(command, EventKind.COMMAND_ACK, detail=detail)

    def _execute(self, command: Command) -> str | None:
        if command.kind is CommandKind.PING:
            return "pong"
        if command.kind is CommandKind.SET_INTERVAL:
            seconds = _positive_float(command.args, "interval_s")
            self._serving.set_telemetry_interval(seconds)
            return f"telemetry every {seconds:g}s"
        if command.kind is CommandKind.RELOAD_MODEL:
            info = self._slots.active()
            if info is None:
                raise ProtocolError("reload_model: no active model")
            self._serve(self._load(info), info)
            return f"reloaded {info.model.name} v{info.model.version}"
        return self._command_rollback(command)

    def _command_rollback(self, command: Command) -> str:
        """The signed permission to run the older model; the one we leave is not reinstalled."""
        previous, leaving = self._slots.previous(), self._slots.active()
        if previous is None:
            raise _NoPreviousError("no previous model to roll back to")
        model = self._load(previous)
        if leaving is not None:
            self._remember_refused(refusal_key(leaving.deployment_id, leaving.model.sha256))
        self._watch = None
        self._slots.rollback()
        self._serve(model, previous)
        self._set_phase(Phase.ACTIVE)
        self._link.publish_state()
        self._link.publish_event(
            self._make_event(
                EventKind.ROLLED_BACK,
                deployment_id=leaving.deployment_id if leaving else None,
                model=previous.model,
                reason="command",
                command_id=command.command_id,
            )
        )
        return f"rolled back to {previous.model.name} v{previous.model.version}"

    # -- helpers -------------------------------------------------------------------------------------------
    def _load(self, info: SlotInfo) -> Model:
        return load_model(info.path, info.runtime, intra_op_threads=self._settings.intra_op_threads)

    def _serve(self, model: Model | None, info: SlotInfo | None) -> None:
        self.active = info if model is not None else None
        self._serving.swap_model(model, info.model if (info and model) else None)
        if self.phase is Phase.IDLE and model is not None:
            self.phase = Phase.ACTIVE

    def _current(self) -> tuple[Model, ModelRef] | None:
        model = self._serving.current_model()
        if model is None or self.active is None:
            return None
        return model, self.active.model

    def _active_ref(self) -> ModelRef | None:
        return self.active.model if self.active else None

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase

    def _refuse(self, manifest: DesiredState, kind: EventKind, exc: EdgefleetError) -> None:
        log.warning("%s deployment %s: %s", kind.value, manifest.deployment_id, exc)
        self._remember_refused(refusal_key(manifest.deployment_id, manifest.sha256))
        self._event(kind, manifest, reason=reason_of(exc), detail=str(exc))

    def _remember_refused(self, key: str) -> None:
        if key not in self._refused:
            self._refused.append(key)
            atomic_write_json(self._refused_path, list(self._refused))

    def _load_refused(self) -> list[str]:
        data = read_json(self._refused_path)
        return [str(k) for k in data] if isinstance(data, list) else []

    def _event(self, kind: EventKind, manifest: DesiredState, **fields: Any) -> None:
        event = self._make_event(kind, deployment_id=manifest.deployment_id, model=manifest.model, **fields)
        self._link.publish_event(event)

    def _command_event(self, command: Command, kind: EventKind, **fields: Any) -> None:
        self._link.publish_event(self._make_event(kind, command_id=command.command_id, **fields))

    def _make_event(self, kind: EventKind, **fields: Any) -> Event:
        return Event(device_id=self._ctx.device_id, kind=kind, **fields)

    def status(self) -> dict[str, Any]:
        dl = self.download
        return {
            "phase": self.phase.value,
            "download": None
            if dl is None
            else {
                "sha256": dl.sha,
                "received": dl.received,
                "total": dl.count,
                "resumed": dl.resumed_blocks,
                "new": dl.new_blocks,
                "duplicates": dl.duplicates,
            },
            "block_requests": self.block_requests,
            "requested_blocks": self.requested_blocks,
            "watching": self._watch is not None,
        }

    def close(self) -> None:
        if self.download is not None:
            self.download.close()


class _NoPreviousError(RemoteDataError):
    reason = "no_previous_model"


def _positive_float(args: dict[str, Any], key: str) -> float:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ProtocolError(f"argument {key!r} must be a positive number, got {value!r}")
    return float(value)


__all__ = ["Link", "Phase", "Serving", "Updater", "reason_of"]
