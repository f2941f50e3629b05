"""Telemetry ingest: how many reports per second the controller stores, at QoS 0 vs QoS 1.

    python benchmarks/ingest.py [--devices 500] [--messages 20000] [--publishers 4]

A private Mosquitto, the real controller in-process on SQLite (or --db URL), N registered
devices. Publisher processes send ``Telemetry`` for those devices as fast as they can; the
figure is messages stored per second, end to end (first publish to last row committed), and
how many never arrived. Run side by side for QoS 0 and QoS 1 so the trade-off is visible.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def publisher(port: int, topic_root: str, device_ids: list[str], count: int, qos: int, start: float) -> None:
    import paho.mqtt.client as mqtt

    from shared import codec
    from shared.messages import LatencyStats, Telemetry
    from shared.topics import Topics

    topics = Topics(topic_root)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    while not client.is_connected():
        time.sleep(0.01)
    lat = LatencyStats(p50_ms=1.0, p95_ms=2.0, p99_ms=3.0, max_ms=4.0, mean_ms=1.2)
    while time.time() < start:
        time.sleep(0.001)
    last = None
    for i in range(count):
        dev = device_ids[i % len(device_ids)]
        msg = Telemetry(
            device_id=dev, seq=i, interval_s=5.0, count=100, latency=lat, cpu_percent=3.0, rss_bytes=1 << 24
        )
        last = client.publish(topics.telemetry(dev), codec.encode(msg), qos=qos)
    if last is not None and qos:
        last.wait_for_publish(60)
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()


def run_once(qos: int, args: argparse.Namespace) -> dict[str, float]:
    import httpx
    from sqlalchemy import create_engine, text

    from controller.settings import Settings
    from controller.testing import run_controller
    from simulators.broker import MosquittoProcess

    with tempfile.TemporaryDirectory(prefix="edgefleet-ingest-") as tmp, MosquittoProcess() as broker:
        root = f"bench{qos}/v1"
        settings = Settings(data_dir=Path(tmp), broker_port=broker.port, topic_root=root, db_url=args.db)
        with run_controller(settings) as ctl:
            run = uuid.uuid4().hex[:6]  # a shared database (--db) may hold earlier runs' devices
            ids = [f"ing-{run}-{i:05d}" for i in range(args.devices)]
            with httpx.Client(base_url=ctl.url + "/api/v1", timeout=30) as api:
                for d in ids:
                    api.post("/devices", json={"device_id": d, "profile": "car-ecu"}).raise_for_status()
            db_url = args.db or f"sqlite:///{tmp}/controller.db"
            engine = create_engine(db_url)
            with engine.connect() as c:
                base = c.execute(text("select count(*) from telemetry")).scalar_one()
            per = args.messages // args.publishers
            start = time.time() + 1.0
            procs = [
                mp.Process(target=publisher, args=(broker.port, root, ids[i :: args.publishers], per, qos, start))
                for i in range(args.publishers)
            ]
            for p in procs:
                p.start()
            total = per * args.publishers
            stored, last_change, last_n = 0, time.time(), -1
            while True:
                with engine.connect() as c:
                    stored = c.execute(text("select count(*) from telemetry")).scalar_one() - base
                now = time.time()
                if stored != last_n:
                    last_n, last_change = stored, now
                if stored >= total or now - last_change > args.idle_timeout:
                    break
                time.sleep(0.05)
            for p in procs:
                p.join(30)
            elapsed = last_change - start
            engine.dispose()
    return {"qos": qos, "sent": total, "stored": stored, "lost": total - stored, "seconds": elapsed,
            "msg_per_s": stored / elapsed if elapsed > 0 else 0.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--publishers", type=int, default=4, help="publisher processes")
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in a temp dir)")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="stop when no new row for this long")
    args = p.parse_args()
    rows = [run_once(qos, args) for qos in (0, 1)]
    print(f"\ntelemetry ingest, {args.devices} devices, {args.messages} messages, {args.publishers} publishers, "
          f"db={'SQLite' if not args.db else args.db.split(':')[0]}")
    print(f"{'qos':>3} {'sent':>8} {'stored':>8} {'lost':>6} {'seconds':>8} {'msg/s':>9}")
    for r in rows:
        print(
            f"{r['qos']:>3} {r['sent']:>8} {r['stored']:>8} {r['lost']:>6} {r['seconds']:>8.2f} {r['msg_per_s']:>9.0f}"
        )
    q0, q1 = rows
    print(f"QoS 1 / QoS 0 throughput: {q1['msg_per_s'] / q0['msg_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
