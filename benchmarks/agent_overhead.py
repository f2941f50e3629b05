"""What the agent costs on top of the bare runtime: per-call latency and idle memory.

    python benchmarks/agent_overhead.py [--rounds 40] [--calls 200] [--settle 3]

(a) Inference path. The same model file and the same inputs go through a
    bare ``onnxruntime.InferenceSession.run`` (the baseline), the C session
    under it (``session._sess.run``, which skips the Python wrapper's checks;
    the agent's runtime layer calls it, so it is the floor), the agent's runtime
    layer (``agent.runtimes.OnnxModel.run``) and a real started
    ``agent.app.Agent.predict`` (private Mosquitto, model pre-installed in its
    active slot; latency recording, error accounting and the hardware hook
    included). All use one intra-op and one inter-op thread. Variants are
    interleaved in shuffled order each round so drift (turbo, noisy
    neighbours) hits all alike; the figure is the median over rounds of the
    mean per-call time within a round. Goal: agent / bare <= 1.05.

(b) Idle memory. Two subprocesses, each connected to the same broker, and
    measured the same way (VmRSS after ``--settle`` seconds idle): a real
    idle Agent, and a bare process that imports onnxruntime and paho-mqtt and
    connects. Once with no model loaded, once with the example model loaded
    in both. Goal: agent / bare <= 1.25.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

MODEL_NAME = "digits_mlp.onnx"
TOPIC_ROOT = "bench/v1"


# -- helpers -----------------------------------------------------------------------
_MODEL_OVERRIDE: Path | None = None


def model_file() -> Path:
    if _MODEL_OVERRIDE is not None:
        return _MODEL_OVERRIDE
    from simulators.examples import model_path

    return model_path(MODEL_NAME)


def synthetic_mlp(width: int, path: Path) -> Path:
    """A 64 -> width -> width -> 10 MLP with random weights: same interface, more compute per call."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims = [64, width, width, 10]
    nodes, inits, prev = [], [], "input"
    layers = list(itertools.pairwise(dims))
    for i, (a, b) in enumerate(layers):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        last = i == len(layers) - 1
        gemm_out = "logits" if last else f"g{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"h{i}"]))
            prev = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "synthetic_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def preinstall(data_dir: Path, path: Path) -> Any:
    from simulators.provision import preinstall_model

    return preinstall_model(data_dir, path, "onnxruntime")


def throwaway_key() -> str:
    from shared.signing import generate_private_key, public_key_pem

    return public_key_pem(generate_private_key().public_key())


def start_agent(
    data_dir: Path, host: str, port: int, device_id: str = "bench-001", public_key_pem: str | None = None
) -> Any:
    from agent.app import Agent
    from agent.config import AgentSettings

    settings = AgentSettings(
        device_id=device_id,
        profile="car-ecu",
        broker_host=host,
        broker_port=port,
        topic_root=TOPIC_ROOT,
        data_dir=data_dir,
        controller_public_key=public_key_pem or throwaway_key(),
        intra_op_threads=1,
    )
    agent = Agent(settings)
    agent.start()
    return agent


def wait_ready(agent: Any, want_model: bool, timeout: float = 20.0) -> None:
    """Until connected and, if asked, serving a model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = agent.status()
        if st["connected"] and (not want_model or st["active_model"]):
            return
        time.sleep(0.05)
    raise TimeoutError(f"agent not ready within {timeout}s: {agent.status()}")


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# -- (a) inference path ------------------------------------------------------------
def bench_inference(rounds: int, calls: int, broker: Any, batch: int = 1) -> list[tuple[str, float]]:
    import onnxruntime as ort

    from agent.runtimes import OnnxModel
    from simulators.examples import load_dataset

    x, _ = load_dataset("digits")
    rows = [np.take(x, range(i * batch, (i + 1) * batch), axis=0, mode="wrap") for i in range(calls)]
    path = model_file()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    bare = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    in_name, out_names = bare.get_inputs()[0].name, [bare.get_outputs()[0].name]
    runtime_model = OnnxModel(path, intra_op_threads=1)

    variants: dict[str, Callable[[np.ndarray], Any]] = {
        "bare onnxruntime session.run": lambda r: bare.run(out_names, {in_name: r})[0],
    }
    inner = getattr(bare, "_sess", None)  # the C session under the Python wrapper (what the agent calls)
    if inner is not None:
        variants["bare ort C session (_sess.run)"] = lambda r: inner.run(out_names, {in_name: r}, None)[0]
    variants["agent.runtimes.OnnxModel.run"] = runtime_model.run
    agent = None
    tmp = tempfile.TemporaryDirectory(prefix="edgefleet-bench-")
    try:
        try:
            preinstall(Path(tmp.name), path)
            agent = start_agent(Path(tmp.name), broker.host, broker.port)
            wait_ready(agent, want_model=True)
            variants["agent.app.Agent.predict"] = agent.predict
        except ImportError as exc:
            print(f"(Agent.predict skipped: {exc})", file=sys.stderr)

        for fn in variants.values():  # warm-up, and the outputs must agree
            for r in rows[:50]:
                fn(r)
        ref = bare.run(out_names, {in_name: rows[0]})[0]
        for name, fn in variants.items():
            np.testing.assert_allclose(np.asarray(fn(rows[0])), ref, rtol=1e-5, atol=1e-6, err_msg=name)

        per_round: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        rng = random.Random(0)
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                fn = variants[name]
                t0 = time.perf_counter()
                for r in rows:
                    fn(r)
                per_round[name].append((time.perf_counter() - t0) / calls)
        return [(k, statistics.median(v) * 1e6) for k, v in per_round.items()]
    finally:
        if agent is not None:
            agent.stop()
        tmp.cleanup()


# -- (b) idle memory ---------------------------------------------------------------
def child_main(kind: str, host: str, port: int, with_model: bool) -> None:
    """Runs in a subprocess: connect, optionally load the model, print READY, idle until killed."""
    if kind == "agent":
        # Key and slot were prepared by the parent: a device is provisioned, it does not
        # generate keys or copy models itself, and those imports would inflate its RSS.
        data_dir = Path(os.environ["BENCH_AGENT_DATA_DIR"])
        agent = start_agent(
            data_dir, host, port, device_id=f"bench-idle-{os.getpid()}", public_key_pem=os.environ["BENCH_AGENT_KEY"]
        )
        wait_ready(agent, want_model=with_model)
        if os.environ.get("BENCH_AGENT_VERIFIED"):
            # What a device carries once it has checked its first signature: the
            # verifier loads its Ed25519 backend then, and a process never unloads it.
            agent.updater._ctx.public_key._backend()
    else:
        import onnxruntime as ort
        import paho.mqtt.client as mqtt

        session = None
        if with_model:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(model_file()), opts, providers=["CPUExecutionProvider"])
            session.run(None, {"input": np.zeros((1, 64), np.float32)})
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        client.connect(host, port, keepalive=30)
        client.loop_start()
        while not client.is_connected():
            time.sleep(0.05)
        _ = session
    print("READY", flush=True)
    while True:
        time.sleep(3600)


def measure_idle_rss(kind: str, broker: Any, with_model: bool, settle: float, verified: bool = False) -> int:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--broker",
        f"{broker.host}:{broker.port}",
        "--model",
        str(model_file()),
    ]
    if with_model:
        cmd.append("--with-model")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if kind == "agent":
        data_dir = Path(tempfile.mkdtemp(prefix="edgefleet-bench-agent-"))
        if with_model:
            preinstall(data_dir, model_file())
        env.update(BENCH_AGENT_DATA_DIR=str(data_dir), BENCH_AGENT_KEY=throwaway_key())
        if verified:
            env["BENCH_AGENT_VERIFIED"] = "1"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"{kind} child failed to start (exit {proc.poll()})")
        time.sleep(settle)
        return rss_of(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- main ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--calls", type=int, default=200, help="calls per variant per round")
    p.add_argument("--batches", default="1,32", help="batch sizes (rows per call) to time")
    p.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading RSS")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--model", type=Path, help="time this ONNX model (input 'input' [N,64]) instead of the example")
    p.add_argument("--width", type=int, help="time a synthetic 64-W-W-10 MLP instead (needs the onnx package)")
    p.add_argument("--skip-rss", action="store_true", help="only the inference table")
    p.add_argument("--child", choices=["agent", "bare"], help=argparse.SUPPRESS)
    p.add_argument("--broker", help=argparse.SUPPRESS)
    p.add_argument("--with-model", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    global _MODEL_OVERRIDE, MODEL_NAME
    if args.model:
        _MODEL_OVERRIDE = args.model.resolve()
    if args.child:
        host, port = args.broker.rsplit(":", 1)
        child_main(args.child, host, int(port), args.with_model)
        return 0

    import onnxruntime

    from simulators.broker import MosquittoProcess

    results: dict[str, Any] = {
        "onnxruntime": onnxruntime.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    batches = [int(b) for b in args.batches.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="edgefleet-bench-model-")
    if args.width:
        _MODEL_OVERRIDE = synthetic_mlp(args.width, Path(tmp.name) / f"mlp_{args.width}.onnx")
    if _MODEL_OVERRIDE is not None:
        MODEL_NAME = _MODEL_OVERRIDE.name
    with MosquittoProcess() as broker:
        timings = {b: bench_inference(args.rounds, args.calls, broker, batch=b) for b in batches}
        rss = (
            {}
            if args.skip_rss
            else {
                (kind, with_model): measure_idle_rss(kind, broker, with_model, args.settle)
                for with_model in (False, True)
                for kind in ("bare", "agent")
            }
        )
        if rss:
            rss[("agent-verified", True)] = measure_idle_rss("agent", broker, True, args.settle, verified=True)

    results["inference_us"] = {}
    for batch, rows in timings.items():
        bare_us = rows[0][1]
        print(
            f"\n(a) inference, {MODEL_NAME}, batch {batch}, 1 thread: "
            f"median of {args.rounds} rounds x {args.calls} calls"
        )
        print(f"{'path':34s} {'us/call':>9s} {'vs bare':>8s}")
        for name, us in rows:
            print(f"{name:34s} {us:9.1f} {us / bare_us:7.3f}x")
        results["inference_us"][f"batch {batch}"] = dict(rows)
        agent_us = dict(rows).get("agent.app.Agent.predict")
        if agent_us is not None:
            verdict = "ok" if agent_us / bare_us <= 1.05 else "OVER"
            print(f"goal Agent.predict <= 1.05x bare: {agent_us / bare_us:.3f}x {verdict}")

    if rss:
        print(f"\n(b) idle RSS, connected to a local Mosquitto, after {args.settle:.0f} s idle")
        print(f"{'process':34s} {'RSS MiB':>9s} {'vs bare':>8s}")
        results["idle_rss_bytes"] = {}
        for with_model in (False, True):
            label = "model loaded" if with_model else "no model"
            b, a = rss[("bare", with_model)], rss[("agent", with_model)]
            print(f"{'bare ort+paho, ' + label:34s} {b / 2**20:9.1f} {1:7.3f}x")
            print(f"{'agent, ' + label:34s} {a / 2**20:9.1f} {a / b:7.3f}x  {'ok' if a / b <= 1.25 else 'OVER'}")
            results["idle_rss_bytes"][label] = {"bare": b, "agent": a, "ratio": a / b}
        b, a = rss[("bare", True)], rss[("agent-verified", True)]
        print(f"{'agent, model, after 1st signature':34s} {a / 2**20:9.1f} {a / b:7.3f}x  "
              f"{'ok' if a / b <= 1.25 else 'OVER'} (Ed25519 backend loaded)")
        results["idle_rss_bytes"]["after first signature"] = {"bare": b, "agent": a, "ratio": a / b}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
