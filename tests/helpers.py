"""Test helpers: a paho client with a fleet identity, used as a stand-in device or subscriber."""
import ssl
import threading
import time

import paho.mqtt.client as mqtt

from host_tools.verify import Tracker


def client_for(fleet, who, port, client_id=None, host="localhost", ca_file=None):
    """Connected paho client using identity `who` ('verifier', 'verifier:NAME' or a device name). Raises on
    refusal. The local broker replaces the client id with the certificate CN."""
    if who.startswith("verifier"):
        d, stem = fleet.verifier_identity_dir(who.partition(":")[2]), "verifier"
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
    c.on_disconnect = lambda *a: connected.set()  # refused after the handshake: no need to wait out the timeout
    c.on_connect_fail = lambda *a: connected.set()
    c.connect(host, port, keepalive=30)
    c.loop_start()
    if not connected.wait(10) or "rc" not in result or result["rc"].is_failure:
        c.loop_stop()
        raise ConnectionError(f"connect as {who} failed: {result.get('rc')}")
    OPEN_CLIENTS.append(c)
    return c


OPEN_CLIENTS = []  # every client_for client: conftest stops them after each test (no reconnecting leftovers)


def stop_clients():
    """Disconnect and stop every client opened with client_for, together: one the broker dropped sits in paho's
    reconnect wait, which looks at loop_stop() only once a second."""
    clients = OPEN_CLIENTS[:]
    OPEN_CLIENTS.clear()
    for c in clients:
        c.disconnect()
    stops = [threading.Thread(target=c.loop_stop) for c in clients]
    for t in stops:
        t.start()
    for t in stops:
        t.join()


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


class Blackhole:
    """A local TCP port where a broker never answers. 'silent': accepts and never sends a byte (the TLS
    handshake waits forever); 'syn': the accept queue is kept full, so Linux drops new SYNs and a TCP
    connect never completes (as with a broker behind a firewall that drops packets)."""

    def __init__(self, mode):
        import socket
        self.mode = mode
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(0 if mode == "syn" else 8)
        self.port = self.srv.getsockname()[1]
        self.held = []
        if mode == "syn":
            for _ in range(3):  # fill the queue; connects that do not complete are just left pending
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", self.port))
                self.held.append(c)
            time.sleep(0.2)
        else:
            self.t = threading.Thread(target=self._accept, daemon=True)
            self.t.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.held.append(c)

    def connect_completes(self, timeout=1.0):
        """Positive control for 'syn': does a fresh TCP connect complete within timeout?"""
        import socket
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", self.port))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def close(self):
        for c in self.held:
            c.close()
        self.srv.close()


class Relay:
    """A TCP relay in front of a broker that can stop forwarding, as a dead link does (a NAT entry gone,
    a cable pulled upstream): while blocked it accepts and reads but forwards nothing and never closes;
    unblock() drops those dead connections and forwards new ones again."""

    def __init__(self, target_port):
        import socket
        self.target = target_port
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.blocked = threading.Event()
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            up = None
            if not self.blocked.is_set():
                try:
                    up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                    up.settimeout(None)
                except OSError:
                    c.close()
                    continue
            with self.lock:
                self.conns += [c] + ([up] if up else [])
            threading.Thread(target=self._pump, args=(c, up), daemon=True).start()
            if up:
                threading.Thread(target=self._pump, args=(up, c), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(4096)
                if not data:
                    break
                if b is not None and not self.blocked.is_set():
                    b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                if s is not None:
                    s.close()

    def block(self):
        self.blocked.set()

    def unblock(self):
        with self.lock:
            dead, self.conns = self.conns, []
        for s in dead:
            try:
                s.shutdown(2)
            except OSError:
                pass
            s.close()
        self.blocked.clear()

    def close(self):
        self.unblock()
        self.srv.close()


def persistent_verifier(fleet, port, seen, client_id="chaos-verifier", topic="devices/+/telemetry"):
    """A verifier with a persistent session (clean_session False, QoS 1) that reconnects on its own."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                    protocol=mqtt.MQTTv311)
    ctx = ssl.create_default_context(cafile=str(fleet.ca_cert))
    ctx.load_cert_chain(str(fleet.verifier_dir / "verifier.pem"), str(fleet.verifier_dir / "verifier.key.pem"))
    c.tls_set_context(ctx)
    c.reconnect_delay_set(0.1, 0.5)
    subscribed = threading.Event()
    c.on_connect = lambda cl, *a: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda _c, _u, m: seen.append((m.topic, m.payload))
    c.connect("localhost", port, keepalive=5)
    c.loop_start()
    assert subscribed.wait(10)
    return c


def collect(seen):
    """verify's summary of dev1's readings in `seen` ((topic, payload) pairs)."""
    t = Tracker()
    for topic, payload in seen:
        t.feed(topic, payload)
    return t.devices["dev1"].summary()


def wait_for_seq(seen, last, timeout=15):
    """Until the reading with seq `last` is in `seen` (no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(b'"seq":%d,' % last in p for _, p in seen):
        time.sleep(0.1)
