"""Battery mode (deep_sleep) on the virtual ESP32, through real mpremote, the real board files and Mosquitto:
machine.deepsleep() ends the interpreter and the board boots again after the sleep with reset cause deep_sleep,
its flash and RTC kept. Every reading arrives across the sleeps, wakes with the broker down included, with no
gap and no seq reused; with publish_every=10 one TLS handshake carries 10 readings."""
import json
import re
import time

import pytest

from board_helpers import Console
from conftest import run_cli
from helpers import collect, persistent_verifier, wait_for_seq
from host_tools.vboard import VBoard

WIFI = {"SENSORPUB_WIFI_PASSWORD": "sensorpub-wifi"}
SLEPT = r"deep sleep for (\d+) ms, (\d+) queued, awake (\d+) ms"


@pytest.fixture
def battery(home, fleet, broker):
    """dev1 on a virtual ESP32 in battery mode; returns its console."""
    started = []

    def do(interval, *sets, sleep=True):
        r = run_cli("vboard", "start", "--name", "b0", "--board", "esp32_generic", "--erase")
        assert r.returncode == 0, r.stderr
        vb = VBoard("b0")
        started.append(vb)
        con = Console(vb, broker)
        args = ["flash", "--port", "vboard:b0", "--device", "dev1", "--broker-port", str(broker.port),
                "--interval", str(interval), "--wifi-ssid", "sensorpub-lab", "--set", f"deep_sleep={str(sleep).lower()}", "--set", "backoff_cap_s=4"]
        for kv in sets:
            args += ["--set", kv]
        r = run_cli(*args, env=WIFI)
        assert r.returncode == 0, r.stdout + r.stderr
        return con

    yield do
    for vb in started:
        vb.stop()


def whole(con):
    """The console since the board started (every wake's lines)."""
    con.start = 0
    return con.text()


def one_payload_per_seq(seen):
    by_seq = {}
    for _, payload in seen:
        by_seq.setdefault(json.loads(payload)["seq"], set()).add(payload)
    reused = {s: p for s, p in by_seq.items() if len(p) > 1}  # a QoS 1 duplicate is the same payload again
    assert not reused, reused
    return sorted(by_seq)


def test_every_reading_arrives_across_deep_sleeps_with_the_broker_down_for_three_wakes(battery, fleet, broker):
    both = []  # telemetry and status, in one session: the broker allows one per certificate CN
    sub = persistent_verifier(fleet, broker.port, both, client_id="battery-verifier", topic="devices/dev1/+")
    con = battery(1)
    con.expect(SLEPT.replace(r"(\d+) queued", "0 queued"), count=3, timeout=40)  # three wakes, each sent
    before = len(both)
    broker.stop()
    con.mark()
    down = con.expect(SLEPT.replace(r"(\d+) queued", r"([1-9]\d*) queued"), count=3, timeout=40)
    queued = [int(m.group(2)) for m in down]
    assert queued == list(range(queued[0], queued[0] + 3)), con.evidence()  # one more kept per wake
    assert "Traceback" not in con.text(), con.evidence()
    broker.start()
    con.mark()
    con.expect(SLEPT.replace(r"(\d+) queued", "0 queued"), timeout=40)  # the backlog went out in one wake
    con.mark()
    con.expect(SLEPT, count=3, timeout=20)  # and wakes go on
    sleeps = len(re.findall(SLEPT, whole(con)))
    assert sleeps >= 10, sleeps
    last = int(re.findall(r"published seq (\d+)", whole(con))[-1])
    wait_for_seq(both, last)
    sub.disconnect()
    sub.loop_stop()
    readings = [(t, p) for t, p in both if t.endswith("/telemetry")]
    s = collect(readings)
    assert (s["first_seq"], s["gaps"]) == (0, 0), (s, con.evidence())
    assert one_payload_per_seq(readings) == list(range(last + 1))
    assert last >= 9, con.evidence()
    # the time across deep sleeps is the RTC's, set by NTP at the first wake's connection (before it, null)
    ts = {json.loads(p)["seq"]: json.loads(p)["ts"] for _, p in readings}
    assert all(ts[s] is not None and abs(ts[s] - time.time()) < 60 for s in ts if s >= 1), ts
    assert len(re.findall(r"Wi-Fi joined", whole(con))) >= 6  # a join per connecting wake: Wi-Fi is off asleep
    # the status says so: online after each CONNECT with the wake's reset cause, "sleeping" before each sleep;
    # a wake is not a boot (the count stays 1: no flash write for it)
    docs = [json.loads(p) for t, p in both if t.endswith("/status")]
    assert {"state": "offline", "reason": "sleeping"} in docs, docs
    woke = [d for d in docs if d.get("reset") == "deep_sleep"]
    assert woke and all(d["boots"] == 1 for d in woke), docs
    # DISCONNECT before each sleep: no Last Will. Mosquitto sends the Will of a client still connected when it
    # shuts down (kept for the persistent verifier until the restart): the board may have been awake at
    # broker.stop(). So: none before the outage, and none after the board's first CONNECT once it was over.
    lost = {"state": "offline", "reason": "lost"}
    docs_before = [json.loads(p) for t, p in both[:before] if t.endswith("/status")]
    docs_after = [json.loads(p) for t, p in both[before:] if t.endswith("/status")]
    back = next(i for i, d in enumerate(docs_after) if d["state"] == "online")
    assert lost not in docs_before and lost not in docs_after[back:] and len(docs_after) - back >= 6, docs


def test_publish_every_10_is_one_tls_handshake_per_10_readings(battery, fleet, broker):
    seen = []
    sub = persistent_verifier(fleet, broker.port, seen, client_id="battery-verifier")
    con = battery(0, "max_cycles=20", "publish_every=10")  # wakes back to back, 20 readings
    con.expect(r"done cycles=20 sent=\d+", timeout=90)
    wait_for_seq(seen, 19)
    sub.disconnect()
    sub.loop_stop()
    text = whole(con)
    wakes = len(re.findall(r"INFO publishing to devices/dev1/telemetry", text))
    assert len(re.findall(SLEPT, text)) == wakes - 1 >= 10, con.evidence()  # the last wake sends and stops
    assert len(re.findall(r"connected to localhost:\d+ with TLS", text)) == 2, con.evidence()
    assert one_payload_per_seq(seen) == list(range(20))
    # (with interval_s 0 a reading also falls due while a wake connects: fewer wakes than readings)


def test_deep_sleep_is_switched_on_and_off_by_remote_config(battery, fleet, broker):
    both = []
    op = persistent_verifier(fleet, broker.port, both, client_id="battery-verifier", topic="devices/dev1/+")
    con = battery(1, sleep=False)
    con.expect(r"published seq 1 ", timeout=30)
    op.publish("devices/dev1/config", json.dumps({"version": 1, "set": {"deep_sleep": True}}), qos=1,
               retain=True).wait_for_publish(5)
    con.expect(r"remote config 1 applied", timeout=10)
    con.expect(SLEPT.replace(r"(\d+) queued", "0 queued"), count=3, timeout=30)
    op.publish("devices/dev1/config", json.dumps({"version": 2, "set": {}}), qos=1, retain=True).wait_for_publish(5)
    con.expect(r"remote config 2 applied", timeout=10)  # read at the next wake's connection
    con.mark()
    con.expect(r"published seq \d+ queued 0", count=3, timeout=20)
    assert not re.search(SLEPT, con.text()), con.evidence()  # awake and connected again
    last = int(re.findall(r"published seq (\d+)", con.text())[-1])
    wait_for_seq(both, last)
    op.disconnect()
    op.loop_stop()
    readings = [(t, p) for t, p in both if t.endswith("/telemetry")]
    assert one_payload_per_seq(readings) == list(range(last + 1)), con.evidence()
    assert "Traceback" not in whole(con), con.evidence()


def test_a_pushed_certificate_is_taken_at_a_wake_and_used_after_the_deep_sleeps(battery, fleet, broker):
    # renewal on the virtual ESP32's board files in battery mode: the retained certificate arrives at a wake's
    # connection, the trial reconnects within that wake, and the wakes after the sleep boot with it
    from host_tools import pki
    both = []
    sub = persistent_verifier(fleet, broker.port, both, client_id="battery-verifier", topic="devices/dev1/+")
    con = battery(1)
    con.expect(SLEPT.replace(r"(\d+) queued", "0 queued"), count=2, timeout=40)
    pki.issue_verifier("demo", name="ops")
    assert broker.reload()
    old = f"{pki.load_cert(fleet.device_dir('dev1') / 'client.pem').serial_number:x}"
    r = run_cli("pki", "renew", "dev1", "--push", "--port", str(broker.port), "--as", "ops", "--timeout", "30",
                "--json")
    assert r.returncode == 0, r.stderr + con.evidence()
    new = json.loads(r.stdout)["serial"]
    con.expect(rf"certificate {new} in use \(was {old}\)", timeout=10)
    con.mark()
    con.expect(SLEPT.replace(r"(\d+) queued", "0 queued"), count=3, timeout=40)  # wakes with the new one
    assert "certificate" not in con.text(), con.evidence()  # nothing left to try: the topic was cleared
    last = int(re.findall(r"published seq (\d+)", whole(con))[-1])
    wait_for_seq(both, last)
    sub.disconnect()
    sub.loop_stop()
    onlines = [json.loads(p) for t, p in both if t.endswith("/status") and json.loads(p)["state"] == "online"]
    assert onlines[-1]["cert"] == new and onlines[-1]["reset"] == "deep_sleep", onlines[-1]
    readings = [(t, p) for t, p in both if t.endswith("/telemetry")]
    assert one_payload_per_seq(readings) == list(range(last + 1)), con.evidence()
    assert "Traceback" not in whole(con), con.evidence()
