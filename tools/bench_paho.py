"""The reference client for connect and publish times: paho-mqtt (CPython) doing what tools/mp_tls_client.py
does on the board, on the same broker with the same identity: CONNECT + a retained QoS 1 'online', then N
QoS 1 publishes of the same reading. Used by `make bench` (tools/bench.py)."""
import ssl
import statistics
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

MSG = b'{"device_id":"dev1","seq":1,"ts":1795459200.123,"uptime_s":12,"status":"ok","temp_c":21.4}'


def once(ca: Path, device_dir: Path, port: int, n: int) -> dict:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev1", protocol=mqtt.MQTTv311)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(device_dir / "client.pem"), str(device_dir / "client.key.pem"))
    c.tls_set_context(ctx)
    c.will_set("devices/dev1/status", b"offline", qos=1, retain=True)
    up = threading.Event()
    c.on_connect = lambda *a: up.set()
    t = time.perf_counter()
    c.connect("localhost", port, keepalive=60)  # TCP and TLS here; CONNACK in the loop thread
    c.loop_start()
    if not up.wait(10):
        raise SystemExit("bench_paho: no CONNACK within 10 s")
    c.publish("devices/dev1/status", b"online", qos=1, retain=True).wait_for_publish(10)
    connect = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n):
        c.publish("devices/dev1/telemetry", MSG, qos=1).wait_for_publish(10)  # one at a time, as the board does
    publish = (time.perf_counter() - t) / n
    c.disconnect()
    c.loop_stop()
    return {"connect_ms": connect * 1000, "publish_ms": publish * 1000}


def run(ca: Path, device_dir: Path, port: int, n: int = 20, repeat: int = 5) -> dict:
    """Medians over `repeat` connections."""
    runs = [once(ca, device_dir, port, n) for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}
