"""The device end to end: real mpremote, the virtual board, real Mosquitto with mTLS, verify.

Runs once per umqtt.simple the board can have frozen: the stand-in and each real copy in $UMQTT_VERSIONS.
"""
import json
import time

import pytest

from conftest import umqtt_params


@pytest.fixture(params=umqtt_params())
def umqtt(request):
    return request.param


# What fails in startup.prepare (config, credential files) or in flash itself happens before session.py and
# umqtt.simple are even imported (firmware/app.py main): which copy the board froze cannot change it, so
# these run with the newest real copy only, not once per copy.
BEFORE_MQTT = pytest.mark.parametrize("umqtt", [p for p in umqtt_params() if p.startswith("real-1")][-1:] or ["standin"])

from board_helpers import mpremote
from helpers import Collector, client_for, collect, persistent_verifier, wait_for_seq
from host_tools import crl, keys, pki
from host_tools.verify import validate


def subscribe_all(fleet, port):
    sub = client_for(fleet, "verifier", port)
    return sub, Collector(sub, "devices/+/telemetry")


def test_readings_arrive_with_consecutive_seq_and_valid_schema(flashed, fleet, broker):
    con = flashed()
    sub, col = subscribe_all(fleet, broker.port)
    msgs = col.wait_for(4, timeout=30)
    assert len(msgs) >= 4, con.evidence()
    seqs = []
    for topic, payload in msgs:
        reading, why = validate(topic, payload)
        assert why is None, (why, payload)
        assert reading["device_id"] == "dev1" == topic.split("/")[1]  # = the certificate CN (ACL enforces it)
        assert reading["status"] == "ok" and isinstance(reading["ts"], float)
        # the fixed fields first, in order: what the outbox stores without its device_id and seq
        assert payload.startswith(b'{"device_id":"dev1","seq":%d,"ts":' % reading["seq"]), payload
        assert abs(reading["ts"] - time.time()) < 30
        seqs.append(reading["seq"])
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    con.expect(r"connected to localhost:\d+ with TLSv1\.[23] ")
    assert "Traceback" not in con.text()


def test_broker_restart_backoff_grows_and_no_reading_is_lost(flashed, fleet, broker):
    # a persistent verifier session from the first reading on: the broker keeps its queue while it is down
    seen = []
    sub = persistent_verifier(fleet, broker.port, seen, client_id="verifier-persist")
    con = flashed(health_every=2, backoff_cap_s=2)
    con.expect(r"published seq 1 ", timeout=20)
    con.mark()
    broker.stop()
    found = con.expect(r"reconnect in ([\d.]+) s \(attempt (\d+), window (\d+) s\)", timeout=40, count=5)
    windows = [int(m.group(3)) for m in found]
    delays = [float(m.group(1)) for m in found]
    assert windows == [1, 2, 2, 2, 2], windows  # base 1 s doubling, capped at 2 s by the test config
    assert all(d <= w + 1 for d, w in zip(delays, windows)), found  # + 1: at most one CONNECT a second
    assert any(abs(d - w) > 0.05 for d, w in zip(delays, windows)), delays  # full jitter, not the whole window
    broker.start()
    con.mark()
    last = int(con.expect(r"published seq (\d+) queued 0", timeout=30)[0].group(1))
    wait_for_seq(seen, last + 2 - last % 2)  # the next health reading: taken after the reconnect
    sub.disconnect()
    sub.loop_stop()
    s = collect(seen)
    # every reading from the first to the last published, the ones taken while the broker was down included
    # (a duplicate is QoS 1 doing its job: a PUBLISH whose PUBACK the stopped broker never sent goes again)
    assert (s["first_seq"], s["gaps"]) == (0, 0) and s["last_seq"] >= last, (s, con.evidence())
    assert last >= 6, con.evidence()  # the outage lasted at least the five backoffs: readings were queued
    # health on every 2nd reading, valid to verify: reconnects 0 before the outage and 1 after it, queued > 0
    # for a reading taken while the broker was down, certificate days as issued (pki: 365 days)
    health = {}
    for topic, payload in seen:
        r, why = validate(topic, payload)
        assert why is None, (why, payload)
        assert ("heap_free" in r) == (r["seq"] % 2 == 0), payload
        if r["seq"] % 2 == 0:
            assert "rssi" not in r, payload  # the Unix port has no Wi-Fi
            health[r["seq"]] = r
    assert health[0]["reconnects"] == 0 and health[0]["queued"] == 0 and 360 <= health[0]["cert_days"] <= 365
    assert all(0 < h["heap_free"] < 100 * 1024 for h in health.values()), health  # the board's 100k heap
    after = [h for q, h in sorted(health.items()) if q > 2]
    assert any(h["queued"] > 0 for h in after) and health[last + 2 - last % 2]["reconnects"] == 1, (after,
                                                                                          con.evidence())


def test_a_broker_back_after_a_long_outage_is_found_by_a_probe_not_at_the_end_of_the_window(flashed, fleet, broker):
    con = flashed(backoff_base_s=10, backoff_cap_s=60, probe_s=1)
    con.expect(r"published seq 1 ", timeout=20)
    con.mark()
    broker.stop()
    # the window after the link loss has no probe (the broker may well be up: probing would bring a fleet back
    # at once); the ones after a refused TCP connect do. Wait for one long enough to tell a probe from its end.
    for n in range(1, 8):
        m = con.expect(r"connection refused[^\n]*reconnect in ([\d.]+) s \(attempt (\d+)", timeout=70, count=n)[-1]
        if float(m.group(1)) >= 8:
            break
    planned = time.monotonic() + float(m.group(1))
    con.mark()
    broker.start()
    con.expect(r"accepts connections again: reconnecting in [\d.]+ s", timeout=10)
    con.expect(r"published seq \d+ queued 0", timeout=10)
    assert time.monotonic() < planned - 3, con.evidence()  # seconds before the back-off window would have ended


def _replace(vboard, board_path, data, tmp_path):
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    r = mpremote(vboard.port, "fs", "cp", str(src), ":" + board_path, "+", "reset")
    assert r.returncode == 0, r.stderr


def test_certificate_from_another_ca_is_refused_and_firmware_backs_off(flashed, tmp_path, vboard, fleet):
    con = flashed(probe_s=1, backoff_base_s=4, backoff_cap_s=4)
    con.expect(r"published seq", timeout=20)
    pki.init_ca("rogue")
    pki.issue_device("rogue", "dev1")
    rogue = pki.Fleet("rogue").device_dir("dev1")
    src1, src2 = tmp_path / "c.der", tmp_path / "k.der"
    src1.write_bytes((rogue / "client.der").read_bytes())
    src2.write_bytes((rogue / "client.key.der").read_bytes())
    r = mpremote(vboard.port, "fs", "cp", str(src1), ":/certs/client.der", "+", "fs", "cp", str(src2),
                 ":/certs/client.key.der", "+", "reset")
    assert r.returncode == 0, r.stderr
    con.mark()
    lost = r"WARN link lost while (connecting|announcing online|publishing)[^\n]*reconnect in ([\d.]+) s \(attempt"
    for n in range(3, 12):  # until a window of 2 s or more has passed: a probe (every 1 s) would have run in it
        found = con.expect(lost, timeout=30, count=n)
        if any(float(m.group(2)) >= 2 for m in found[:-1]):
            break
    assert "published seq" not in con.since_boot()
    assert "Traceback" not in con.since_boot()
    assert "accepts connections again" not in con.since_boot()  # TCP got through: no probing, the back-off holds


def test_wrong_broker_ca_is_refused_by_the_device(flashed, tmp_path, vboard):
    con = flashed()
    con.expect(r"published seq", timeout=20)
    pki.init_ca("other")
    con.mark()
    _replace(vboard, "/certs/ca.der", (pki.Fleet("other").ca_dir / "ca.der").read_bytes(), tmp_path)
    con.expect(r"broker certificate not trusted: /certs/ca\.der[^\n]*attempt 2", timeout=30)
    assert "published seq" not in con.since_boot() and "Traceback" not in con.since_boot()


@BEFORE_MQTT
def test_missing_client_cert_is_one_clear_line_and_retries(flashed, vboard, umqtt):
    con = flashed()
    con.expect(r"published seq", timeout=20)
    con.mark()
    r = mpremote(vboard.port, "fs", "rm", ":/certs/client.der", "+", "reset")
    assert r.returncode == 0, r.stderr
    found = con.expect(r"ERROR credentials: /certs/client\.der missing: run 'sensorpub flash[^\n]*retrying in (\d+) s",
                       timeout=20, count=2)
    assert [int(m.group(1)) for m in found][:2] == [1, 2]
    assert "Traceback" not in con.since_boot()


@BEFORE_MQTT
@pytest.mark.parametrize("content,line", [
    (b'{"device_id": "dev1", "broker_host": "localhost", "colour": 3}', r"unknown key 'colour' in /config\.json"),
    (b'{"device_id": "dev1", "broker_host": "localhost", "interval_s": "5"}', r"key 'interval_s' in /config\.json must be int"),
    (b'{"broker_host": "localhost"}', r"required key 'device_id' missing"),
    (b'{"device_id": ', r"/config\.json is not valid JSON"),
    (b'{"device_id": "dev1", "broker_host": "localhost", "keepalive_s": 100000000000000000000000}',
     r"key 'keepalive_s' in /config\.json is 100000000000000000000000: allowed 2 to 65535"),
])
def test_bad_config_is_one_clear_line_and_retries(flashed, vboard, tmp_path, content, line, umqtt):
    con = flashed()
    con.expect(r"published seq", timeout=20)
    con.mark()
    _replace(vboard, "/config.json", content, tmp_path)
    con.expect(r"ERROR config: " + line + r"[^\n]*retrying in \d+ s", timeout=20, count=2)
    assert "Traceback" not in con.since_boot()


@BEFORE_MQTT
@pytest.mark.parametrize("damage", ["pem", "truncated"])
def test_corrupt_der_key_names_the_file(flashed, vboard, fleet, tmp_path, damage, umqtt):
    con = flashed()
    con.expect(r"published seq", timeout=20)
    con.mark()
    der = (fleet.device_dir("dev1") / "client.key.der").read_bytes()
    bad = b"-----BEGIN PRIVATE KEY-----\nxyz\n" if damage == "pem" else der[:-9]  # a copy cut short
    _replace(vboard, "/certs/client.key.der", bad, tmp_path)
    con.expect(r"/certs/client\.key\.der is not DER \(PEM or damaged\?\)[^\n]*retrying", timeout=20)
    assert "Traceback" not in con.since_boot(), con.evidence()


def test_failing_sensor_never_stops_publishing(flashed, fleet, broker):
    flashed(sensor="sim_faulty")
    sub, col = subscribe_all(fleet, broker.port)
    msgs = col.wait_for(6, timeout=30)
    statuses = [json.loads(p)["status"] for _, p in msgs]
    assert "sensor_error" in statuses and statuses.count("ok") >= 3, statuses
    bad = [json.loads(p) for _, p in msgs if b"sensor_error" in p][0]
    assert "no response" in bad["error"] and validate("devices/dev1/telemetry", json.dumps(bad).encode())[1] is None


def test_a_reset_with_readings_queued_loses_none_and_reuses_no_seq(flashed, vboard, fleet, broker):
    seen = []
    sub = persistent_verifier(fleet, broker.port, seen, client_id="verifier-reset")
    con = flashed()
    con.expect(r"published seq 1 ", timeout=20)
    broker.stop()
    con.mark()
    con.expect(r"reconnect in", timeout=20, count=3)  # readings are being taken into the outbox meanwhile
    assert mpremote(vboard.port, "reset").returncode == 0
    queued = int(con.expect(r"outbox (\d+)/", timeout=20)[0].group(1))
    assert queued >= 2, con.evidence()  # the reset came with readings on flash, not yet sent
    broker.start()
    last = int(con.expect(r"published seq (\d+) queued 0", timeout=30)[0].group(1))
    wait_for_seq(seen, last + 2 - last % 2)  # the next health reading: taken after the reconnect
    sub.disconnect()
    sub.loop_stop()
    s = collect(seen)
    assert (s["first_seq"], s["gaps"]) == (0, 0) and s["last_seq"] >= last, (s, con.evidence())


@BEFORE_MQTT
def test_flash_never_copies_ca_key_or_pem_keys(flashed, vboard, fleet, umqtt):
    flashed()
    r = mpremote(vboard.port, "fs", "ls", ":/certs", "+", "fs", "ls", ":/")
    assert r.returncode == 0, r.stderr
    assert "client.der" in r.stdout and "ca.der" in r.stdout
    assert ".pem" not in r.stdout and "ca.key" not in r.stdout
    # every file on the board's flash (not /.vb, the virtual board's ROM): /lib does not exist, umqtt is frozen
    r = mpremote(vboard.port, "exec", "import os\ndef walk(d):\n for n in os.listdir(d):\n  p = d.rstrip('/') + '/' + n\n"
                 "  print(p)\n  if p != '/.vb' and os.stat(p)[0] & 0x4000:\n   walk(p)\nwalk('/')")
    assert r.returncode == 0 and "/certs/client.key.der" in r.stdout and "/contract.py" in r.stdout, r.stdout + r.stderr
    assert "/lib" not in r.stdout and "umqtt" not in r.stdout, r.stdout  # the board's own umqtt.simple is used
    assert "key.pem" not in r.stdout and "ca.key" not in r.stdout and ".pem" not in r.stdout, r.stdout


@pytest.mark.parametrize("mode", ["silent", "syn"])
def test_blackholed_broker_never_hangs_the_board(flashed, mode):
    # connect must time out with every umqtt.simple version: 1.4.0's connect() takes no timeout
    from helpers import Blackhole
    hole = Blackhole(mode)
    try:
        if mode == "syn":
            assert not hole.connect_completes(), "the blackhole let a TCP connect through"
        con = flashed(broker_port=hole.port, connect_timeout_s=2, backoff_cap_s=2)
        found = con.expect(r"WARN link lost while connecting to localhost:\d+: timed out; reconnect in [\d.]+ s "
                           r"\(attempt (\d+)", timeout=25, count=3)
        assert [int(m.group(1)) for m in found][:3] == [1, 2, 3]
        assert "Traceback" not in con.text() and "BUG" not in con.text(), con.evidence()
    finally:
        hole.close()


def _reissue_dated(name, not_before, days):
    # dev1's key, with a certificate from the fleet CA valid from not_before for days
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID
    f = pki.Fleet("demo")
    ca_cert, ca_key = f.require_ca()
    d = f.device_dir(name)
    key = keys.load_key(d / "client.key.pem")
    cert = pki.build_leaf(ca_cert, ca_key, pki._name(name, "demo"), key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH,
                          sans=pki._client_san("demo", name), days=days, not_before=not_before)
    (d / "client.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (d / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("case, line", [
    ("expired", r"WARN link lost while connecting[^\n]*our certificate /certs/client\.der expired on \d{4}-\d\d-\d\d: "
                r"renew it with 'sensorpub pki renew <name>'"),
    ("not_yet_valid", r"WARN link lost while connecting[^\n]*our certificate /certs/client\.der is not valid before "
                      r"\d{4}-\d\d-\d\d: the board's clock or the certificate's dates are wrong"),
    ("revoked", r"WARN link lost while connecting[^\n]*the broker ended the connection at the TLS handshake: it "
                r"refused our certificate \(revoked\?"),
    ("key_of_another_device", r"ERROR credentials: /certs/client\.key\.der does not belong to /certs/client\.der"),
])
def test_each_refused_certificate_gets_its_own_line(flashed, fleet, broker, case, line):
    import datetime as dt
    now = keys.now()
    if case == "expired":
        _reissue_dated("dev1", now - dt.timedelta(days=400), 365)
    elif case == "not_yet_valid":
        _reissue_dated("dev1", now + dt.timedelta(days=10), 365)
    elif case == "revoked":
        crl.revoke_device("demo", "dev1")
        broker.reload()
    else:
        d = fleet.device_dir("dev1")
        (d / "client.key.der").write_bytes((fleet.device_dir("dev2") / "client.key.der").read_bytes())
    con = flashed()
    con.expect(line, timeout=20, count=2)  # the same clear line on every attempt, with back-off
    text = con.text()
    assert "Traceback" not in text and "OSError (32" not in text, con.evidence()
