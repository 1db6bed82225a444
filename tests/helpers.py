"""Test helpers: a paho client with a fleet identity, used as a stand-in device or subscriber."""
import ssl
import threading
import time

import paho.mqtt.client as mqtt


def client_for(fleet, who, port, client_id=None, host="localhost", ca_file=None):
    """Connected paho client using identity `who` ('verifier' or a device name). Raises on refusal."""
    if who == "verifier":
        d, stem = fleet.verifier_dir, "verifier"
    else:
        d, stem = fleet.device_dir(who), "client"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{who}-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv311)
    ctx = ssl.create_default_context(cafile=str(ca_file or fleet.ca_cert))
    ctx.load_cert_chain(str(d / f"{stem}.pem"), str(d / f"{stem}.key.pem"))
    c.tls_set_context(ctx)
    connected = threading.Event()
    result = {}

    def on_connect(_c, _u, _f, reason, _p):
        result["rc"] = reason
        connected.set()

    c.on_connect = on_connect
    c.connect(host, port, keepalive=30)
    c.loop_start()
    if not connected.wait(10) or result["rc"].is_failure:
        c.loop_stop()
        raise ConnectionError(f"connect as {who} failed: {result.get('rc')}")
    return c


class Collector:
    """Subscribe and collect (topic, payload) pairs."""

    def __init__(self, client, topic):
        self.messages = []
        self.cond = threading.Condition()
        client.on_message = self._on
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.subscribe(topic, qos=1)
        subscribed.wait(5)

    def _on(self, _c, _u, m):
        with self.cond:
            self.messages.append((m.topic, m.payload))
            self.cond.notify_all()

    def wait_for(self, n, timeout=10):
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
        return list(self.messages)
