"""verify: schema, sequence tracking, and the real subscription path."""
import json
import time

import pytest

from conftest import run_cli
from helpers import client_for
from host_tools.verify import Tracker, validate

T = "devices/dev1/telemetry"
TS = 1795459200.125  # fixed: test ids hold the payload, and xdist workers must collect the same ids


def msg(seq, **kw):
    m = {"device_id": "dev1", "seq": seq, "ts": time.time(), "status": "ok", "temp_c": 20.5}
    m.update(kw)
    return json.dumps(m).encode()


def fixed(seq, **kw):
    return msg(seq, **dict({"ts": TS}, **kw))


def test_valid_payloads():
    assert validate(T, msg(0))[1] is None
    assert validate(T, msg(1, ts=None, uptime_s=12))[1] is None
    assert validate(T, msg(2, status="sensor_error", error="timeout", temp_c=None))[1] is None


@pytest.mark.parametrize("payload,why", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (fixed(1, device_id="dev2"), "does not match"),
    (fixed(-1), "seq"),
    (fixed(True), "seq"),
    (fixed(1, ts=None), "uptime_s"),
    (fixed(1, ts="yesterday"), "ts"),
    (fixed(1, status="great"), "status"),
    (fixed(1, temp_c="warm"), "not a number"),
    (fixed(1, status="sensor_error"), "error string"),
    (json.dumps({"device_id": "dev1", "seq": 1, "ts": 1, "status": "ok"}).encode(), "no sensor value"),
])
def test_invalid_payloads_name_the_problem(payload, why):
    reading, reason = validate(T, payload)
    assert reading is None and why in reason


def test_tracker_counts_gap_duplicate_out_of_order_and_malformed():
    t = Tracker()
    for s in (1, 2, 5, 5, 3):
        t.feed(T, msg(s))
    t.feed(T, b"{broken")
    s = t.devices["dev1"].summary()
    assert (s["valid"], s["gaps"], s["duplicates"], s["out_of_order"], s["malformed"]) == (4, 1, 1, 1, 1)
    assert s["first_seq"] == 1 and s["last_seq"] == 5
    assert 0 <= s["latency_max_s"] < 5


def test_tracker_status_and_latency():
    t = Tracker()
    t.feed("devices/dev1/status", b"online")
    t.feed(T, msg(1, ts=100.0), received=102.5)
    s = t.devices["dev1"].summary()
    assert s["status"] == "online" and s["latency_avg_s"] == 2.5


def test_status_payloads_of_the_firmware_are_understood():
    from host_tools.verify import describe
    t = Tracker()
    kind, _, note = t.feed("devices/dev1/status", b'{"state":"online","reset":"watchdog"}')
    assert (kind, note, t.devices["dev1"].status) == ("status", "online (reset: watchdog)", "online")
    _, _, note = t.feed("devices/dev1/status", b'{"state":"offline","reason":"lost"}')
    assert note == "offline (reason: lost)" and describe("status", "devices/dev1/status", None, note) == \
        "dev1 status offline (reason: lost)"


def test_device_controlled_text_cannot_reach_the_terminal_raw():
    from host_tools.verify import describe
    t = Tracker()
    evil = "\x1b]0;pwned\x07\x1b[2J"
    _, _, note = t.feed("devices/dev1/status", json.dumps({"state": "online", "reset": evil}).encode())
    line = describe("status", "devices/dev1/status", None, note)
    kind, m, note = t.feed(T, json.dumps({"device_id": "dev1", "seq": 1, "ts": 5.0, "status": "ok",
                                          "temp_c": 1.0, evil: 2.0}).encode())
    line2 = describe(kind, T, m, note)
    for text in (line, line2, t.table()):
        assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert "\\x1b]0;pwned" in line and "\\x1b" in line2


def _verify_started(*args):
    """`sensorpub verify ARGS` in the background, returned once it says the broker confirmed its subscription
    (what is published from then on is counted): (process, the stderr lines it wrote so far)."""
    import subprocess, sys
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "verify", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    while not lines or not lines[-1].startswith("subscribed"):
        line = proc.stderr.readline()  # verify's own --timeout ends it (and the pipe) if it never subscribes
        assert line, "".join(lines) + proc.communicate()[1]
        lines.append(line)
    return proc, "".join(lines)


def test_verify_cli_reports_gap_duplicate_and_malformed_from_broker(broker, fleet):
    proc, said = _verify_started("--port", str(broker.port), "--timeout", "6", "--json")
    dev = client_for(fleet, "dev1", broker.port)
    for payload in (msg(10), msg(11), msg(11), msg(14), b"garbage"):
        dev.publish(T, payload, qos=1).wait_for_publish(5)
    out, err = proc.communicate(timeout=30)
    err = said + err
    assert proc.returncode == 5, err  # gaps outrank malformed
    assert "readings missing (gaps in seq): dev1 2" in err, err
    summary = {d["device"]: d for d in json.loads(out)}
    s = summary["dev1"]
    assert (s["valid"], s["duplicates"], s["gaps"], s["malformed"]) == (3, 1, 2, 1), s


def test_verify_cli_count_reached_and_not_reached(broker, fleet):
    proc, _ = _verify_started("--port", str(broker.port), "--device", "dev1", "--count", "2", "--timeout", "8")
    dev = client_for(fleet, "dev1", broker.port)
    for s in (1, 2):
        dev.publish(T, msg(s), qos=1).wait_for_publish(5)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "dev1 seq=2 ok" in out
    r = run_cli("verify", "--port", str(broker.port), "--device", "dev1", "--count", "1", "--timeout", "1")
    assert r.returncode == 4
    assert "only 0 of 1 valid readings from dev1" in r.stderr


def test_verify_exit_status_for_malformed_refused_and_silence(broker, fleet):
    proc, said = _verify_started("--port", str(broker.port), "--device", "dev1", "--count", "2", "--timeout", "20")
    dev = client_for(fleet, "dev1", broker.port)
    for payload in (b"garbage", msg(1), msg(2)):
        dev.publish(T, payload, qos=1).wait_for_publish(5)
    out, err = proc.communicate(timeout=30)
    err = said + err
    assert proc.returncode == 6 and "malformed payloads: dev1 1" in err, err
    from conftest import free_port
    r = run_cli("verify", "--port", str(free_port()), "--timeout", "2")
    assert r.returncode == 3 and "nothing listens on" in r.stderr, r.stderr
    r = run_cli("verify", "--port", str(broker.port), "--timeout", "1")
    assert r.returncode == 4 and "no valid reading arrived within 1 s" in r.stderr, r.stderr


def test_the_table_fits_100_columns_with_a_long_device_name():
    import time
    t = Tracker()
    name = "greenhouse-north-bench-07"  # 25 characters
    for seq in (0, 1, 2, 4, 4):
        t.feed(f"devices/{name}/telemetry", json.dumps({"device_id": name, "seq": seq, "ts": time.time() - 0.25,
                                                         "uptime_s": 1, "status": "ok", "temp_c": 1.0}).encode())
    t.feed(f"devices/{name}/status", b'{"state":"online","reset":"watchdog"}')
    lines = t.table().splitlines()
    assert max(map(len, lines)) <= 100, lines
    assert lines[0].split() == ["device", "valid", "bad", "gaps", "dup", "order", "s_err", "first", "last",
                                "lat_avg", "lat_max", "status"]
    assert lines[1].split()[:9] == ["greenhouse-north-bench-~", "4", "0", "1", "1", "0", "0", "0", "4"], lines
