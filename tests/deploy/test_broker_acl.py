"""The shipped Mosquitto config really isolates devices: TLS, passwords, per-device ACL."""

from __future__ import annotations

import datetime as dt
import os
import queue
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulators.broker import find_mosquitto, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PASSWORDS = {"lock-1": "pw-1", "lock-2": "pw-2", "edgefleet-controller": "pw-ctl"}

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")


def _self_signed(tmp: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return tmp / "server.crt"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    tmp = tmp_path_factory.mktemp("secure-broker")
    cert = _self_signed(tmp)
    passwd = tmp / "passwd"
    passwd.touch()
    for user, pw in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = (conf.replace("listener 8883", f"listener {port} 127.0.0.1")
            .replace("/etc/mosquitto/certs/ca.crt", str(cert))
            .replace("/etc/mosquitto/certs/server.crt", str(cert))
            .replace("/etc/mosquitto/certs/server.key", str(tmp / "server.key"))
            .replace("/etc/mosquitto/passwd", str(passwd))
            .replace("/etc/mosquitto/edgefleet.acl", str(DEPLOY / "edgefleet.acl"))
            .replace("/var/lib/mosquitto/", f"{tmp}/"))
    if os.geteuid() == 0:
        conf += "user root\n"  # else mosquitto drops to a user that cannot read our temp dir
    (tmp / "m.conf").write_text(conf)
    proc = subprocess.Popen([find_mosquitto(), "-c", str(tmp / "m.conf")], stderr=subprocess.PIPE)
    time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    yield port, cert
    proc.terminate()
    proc.wait(5)


def _client(port: int, cert: Path, user: str, password: str, inbox: queue.Queue[mqtt.MQTTMessage]) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}")
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(cert), cert_reqs=ssl.CERT_REQUIRED)
    c.on_message = lambda _c, _u, msg: inbox.put(msg)
    connected: queue.Queue[object] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: connected.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    rc = connected.get(timeout=5)
    assert not rc.is_failure, rc  # type: ignore[attr-defined]
    return c


def test_wrong_password_refused(secure_broker: tuple[int, Path]) -> None:
    port, cert = secure_broker
    with pytest.raises(AssertionError):
        _client(port, cert, "lock-1", "wrong", queue.Queue())


def test_device_sees_only_its_own_topics(secure_broker: tuple[int, Path]) -> None:
    port, cert = secure_broker
    lock1_in: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    ctl_in: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    lock1 = _client(port, cert, "lock-1", "pw-1", lock1_in)
    ctl = _client(port, cert, "edgefleet-controller", "pw-ctl", ctl_in)
    try:
        lock1.subscribe("edgefleet/v1/devices/+/desired", qos=1)
        ctl.subscribe("edgefleet/v1/devices/+/telemetry", qos=1)
        time.sleep(0.3)
        ctl.publish("edgefleet/v1/devices/lock-2/desired", b"for lock-2", qos=1).wait_for_publish(5)
        ctl.publish("edgefleet/v1/devices/lock-1/desired", b"for lock-1", qos=1).wait_for_publish(5)
        # A device cannot speak for another device.
        lock1.publish("edgefleet/v1/devices/lock-2/telemetry", b"forged", qos=1).wait_for_publish(5)
        lock1.publish("edgefleet/v1/devices/lock-1/telemetry", b"genuine", qos=1).wait_for_publish(5)
        got = lock1_in.get(timeout=5)
        assert (got.topic, got.payload) == ("edgefleet/v1/devices/lock-1/desired", b"for lock-1")
        tel = ctl_in.get(timeout=5)
        assert tel.payload == b"genuine"
        time.sleep(0.5)
        assert lock1_in.empty() and ctl_in.empty()
    finally:
        lock1.loop_stop()
        ctl.loop_stop()
