"""status: the fleet at a glance from a real SQLite store (offline device, certificate expiring, never heard
from), and with no store from a real Mosquitto's retained statuses; the table fits 100 columns; text a device
controls cannot reach the terminal raw."""
import json
import subprocess
import sys
import time

import pytest

from conftest import free_port, run_cli
from helpers import client_for
from host_tools.fleet_status import age, cells, missing_ranges, notes, summarize, table
from host_tools.store import open_store, store_path

LONG = "greenhouse-north-bench-07"  # 25 characters: cut to 24 with '~'


def reading(dev, seq, ts, received, **health):
    payload = {"device_id": dev, "seq": seq, "ts": ts, "uptime_s": seq * 30, "status": "ok",
               "temp_c": 20.0 + seq / 10, **health}
    return dict(device_id=dev, seq=seq, ts=ts, received_at=received, status="ok", payload=json.dumps(payload))


def fill(now):
    """dev1 online with a gap and health; LONG offline (lost); dev-cert online, old firmware, 12 days left;
    dev2 (from the fleet's certs) never heard from."""
    s = open_store(None, "demo")
    lat = [9.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # median 0.55
    for i, seq in enumerate((0, 1, 2, 3, 6, 7, 8, 9)):  # 4 and 5 missing
        ts = now - 125 - (9 - seq) * 30
        health = dict(heap_free=81000, rssi=-70, reconnects=0, queued=1, cert_days=201) if seq == 0 else \
            dict(heap_free=80000, rssi=-61, reconnects=2, queued=0, cert_days=200) if seq == 9 else {}
        s.add(**reading("dev1", seq, ts, ts + lat[i], **health))
    s.set_status("dev1", "online", json.dumps({"state": "online", "reset": "hard", "fw": "0.2.0",
                                               "board": "esp32_dht22", "mp": "1.24.1", "boots": 3,
                                               "cert": "5a3c0ffee1d2", "config": 0}), now - 3600)
    for seq in (100, 101, 102):
        ts = now - 3 * 3600 - (102 - seq) * 30
        s.add(**reading(LONG, seq, ts, ts + 1.0))
    s.set_status(LONG, "online", json.dumps({"state": "online", "reset": "power_on", "fw": "0.1.9",
                                             "board": "esp32_c3", "mp": "1.23.0", "boots": 40}), now - 4 * 3600)
    s.set_status(LONG, "offline", json.dumps({"state": "offline", "reason": "lost"}), now - 2 * 3600 - 60)
    s.add(**reading("dev-cert", 5, now - 2400.5, now - 2400, cert_days=12, rssi=-80, reconnects=0))
    s.set_status("dev-cert", "online", json.dumps({"state": "online", "reset": "power_on", "cert": "7a",
                                                   "cert_refused": {"serial": "7b", "reason": "expired on 2025-01-01"}}),
                 now - 5 * 86400)
    s.close()


def test_status_from_the_store_shows_offline_expiring_and_never_seen_devices(fleet):
    fill(time.time())
    r = run_cli("status")
    assert r.returncode == 0, r.stderr
    assert f"status: from the store {store_path('demo')}" in r.stderr
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 100, lines
    assert lines[0].split() == ["device", "state", "seen", "seq", "gaps", "lat_s", "cert_d", "cert", "fw", "rssi",
                                "reconn"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:6]}
    assert rows["dev1"] == ["dev1", "online", "2m", "9", "2", "0.55", "200", "~e1d2", "0.2.0", "-61", "2"], lines
    assert rows["greenhouse-north-bench-~"][:9] == ["greenhouse-north-bench-~", "offline", "2h", "102", "0", "1.00",
                                                    "-", "-", "0.1.9"]  # the firmware it ran when last online
    assert rows["dev-cert"] == ["dev-cert", "online", "40m", "5", "0", "0.50", "12!", "7a", "-", "-80", "0"], lines
    assert rows["dev2"] == ["dev2", "-", "never", "-", "-", "-", "-", "-", "-", "-", "-"], lines
    assert "offline: greenhouse-north-bench-07 (lost)" in lines
    assert "certificate expires within 30 days: dev-cert (12 d); renew: sensorpub pki renew NAME --push" in lines
    assert "refused a pushed certificate: dev-cert (serial 7b: expired on 2025-01-01)" in lines
    assert "never heard from: dev2" in lines

    r = run_cli("status", "--json")
    assert r.returncode == 0, r.stderr
    got = {row["device"]: row for row in json.loads(r.stdout)}
    assert sorted(got) == ["dev-cert", "dev1", "dev2", LONG]
    d1 = got["dev1"]
    assert (d1["state"], d1["reset"], d1["fw"], d1["board"], d1["mp"], d1["boots"]) == \
        ("online", "hard", "0.2.0", "esp32_dht22", "1.24.1", 3)
    assert (d1["readings"], d1["first_seq"], d1["last_seq"], d1["gaps"], d1["latency_median_s"]) == (8, 0, 9, 2, 0.55)
    assert (d1["cert_days"], d1["rssi"], d1["reconnects"], d1["heap_free"], d1["queued"]) == (200, -61, 2, 80000, 0)
    assert d1["flags"] == ["gaps"] and d1["known"] is True and d1["cert_expiring"] is False
    assert d1["cert"] == "5a3c0ffee1d2" and d1["cert_refused"] is None
    assert 120 <= d1["last_seen_s"] < 180
    off = got[LONG]
    assert (off["state"], off["reason"], off["fw"], off["boots"], off["known"]) == ("offline", "lost", "0.1.9", 40,
                                                                                    False)
    assert off["flags"] == ["offline"] and 7200 <= off["last_seen_s"] < 7300  # the Last Will is newer than its readings
    cert = got["dev-cert"]
    assert cert["cert_expiring"] is True and cert["flags"] == ["cert_expiring"] and cert["fw"] is None
    never = got["dev2"]
    assert never["never_seen"] is True and never["flags"] == ["never"] and never["last_seq"] is None
    assert never["state"] is None and never["known"] is True


def test_status_without_a_store_asks_the_broker_for_retained_statuses_and_telemetry(fleet, broker):
    from host_tools import pki
    pki.issue_device("demo", "dev3")  # never connects
    for dev, doc in (("dev1", {"state": "online", "reset": "watchdog", "fw": "0.2.0", "board": "esp32_dht22",
                               "mp": "1.24.1", "boots": 9}),
                     ("dev2", {"state": "offline", "reason": "lost"})):
        c = client_for(fleet, dev, broker.port)
        c.publish(f"devices/{dev}/status", json.dumps(doc), qos=1, retain=True).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "status", "--json", "--wait", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    for line in proc.stderr:  # until it is subscribed: a reading sent from then on is heard
        err.append(line)
        if "subscribed" in line:
            break
    assert err and "subscribed" in err[-1], "".join(err)
    dev = client_for(fleet, "dev1", broker.port)
    try:
        ts = time.time()
        payload = {"device_id": "dev1", "seq": 7, "ts": ts, "uptime_s": 70, "status": "ok", "temp_c": 21.5,
                   "rssi": -58, "reconnects": 1, "cert_days": 20}
        dev.publish("devices/dev1/telemetry", json.dumps(payload), qos=1).wait_for_publish(5)
    finally:
        dev.disconnect()
        dev.loop_stop()
    out = proc.stdout.read()  # small: read to the end, then the rest of stderr (nothing is lost in a buffer)
    err = "".join(err) + proc.stderr.read()
    proc.wait(30)
    assert proc.returncode == 0, err
    assert f"no store ({store_path('demo')} does not exist): asking the broker at localhost:{broker.port}" in err
    got = {row["device"]: row for row in json.loads(out)}
    assert sorted(got) == ["dev1", "dev2", "dev3"]
    d1 = got["dev1"]
    assert (d1["state"], d1["fw"], d1["boots"], d1["last_seq"], d1["readings"]) == ("online", "0.2.0", 9, 7, 1)
    assert (d1["rssi"], d1["reconnects"], d1["cert_days"], d1["cert_expiring"]) == (-58, 1, 20, True)
    assert d1["last_seen_s"] is not None and d1["last_seen_s"] < 30 and 0 <= d1["latency_median_s"] < 30
    d2 = got["dev2"]
    assert (d2["state"], d2["reason"], d2["flags"]) == ("offline", "lost", ["offline"])
    assert d2["last_seen"] is None  # a retained status says nothing about when it was sent
    assert got["dev3"]["never_seen"] is True
    assert not store_path("demo").exists()  # reading the fleet never creates a store

    r = run_cli("status", "--wait", "1")  # the table from the same source
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines()[1:4]}
    assert rows["dev2"][:3] == ["dev2", "offline", "-"] and rows["dev3"][:3] == ["dev3", "-", "never"], r.stdout
    assert rows["dev1"][1] == "online" and rows["dev1"][8] == "0.2.0", r.stdout
    assert "offline: dev2 (lost)" in r.stdout


@pytest.mark.parametrize("seconds,shown", [(None, "-"), (0, "0s"), (12.7, "12s"), (59, "59s"), (60, "1m"),
                                           (180, "3m"), (7199, "1h"), (7200, "2h"), (5 * 86400 + 5, "5d")])
def test_age(seconds, shown):
    assert age(seconds) == shown


def test_missing_ranges():
    assert missing_ranges([9, 1, 2, 5, 5, 3]) == [(4, 4), (6, 8)]
    assert missing_ranges([]) == [] and missing_ranges([4]) == []


def test_the_table_fits_100_columns_whatever_the_devices_send():
    now = 1795459200.0
    evil = "\x1b]0;pwned\x07\x1b[2J"
    rows = [summarize(LONG + "-and-then-some" + evil, [
        {"seq": 0, "ts": now - 999999.5, "received_at": now, "status": "ok",
         "payload": json.dumps({"rssi": -100, "reconnects": 12345678, "cert_days": -4000})},
        {"seq": 123456789012, "ts": None, "received_at": now, "status": "ok", "payload": "{}"}],
        {"doc": json.dumps({"state": "rebooting" + evil, "fw": "0.2.0-dirty-with-a-long-suffix" + evil,
                            "cert": "00c0ffee"}),
         "updated_at": now}, now=now)]
    rows.append(summarize("dev1", [], None, now=now, known=True))
    text = table(rows)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100, lines
    assert "\x1b" not in text and "\x07" not in text
    first = lines[1].split()
    assert first[0] == "greenhouse-north-bench-~" and first[1] == "reboot~" and first[3] == "12345678~"
    assert first[4] == "123456~" and first[6] == "-4000!" and first[7] == "~ffee" and first[8] == "0.2.0-di~"
    assert cells(rows[0])[1].startswith("rebooting\\x1b]0;pwned\\x07")  # escaped, not sent
    many = [summarize(f"{LONG}-{i:03d}", [], {"doc": json.dumps({"state": "offline", "reason": "lost" + evil}),
                                             "updated_at": now}, now=now) for i in range(40)]
    out = notes(many)
    assert len(out) > 1 and max(map(len, out)) <= 100 and all("\x1b" not in ln for ln in out), out
    assert out[0].startswith(f"offline: {LONG}-000 (lost\\x1b]0;pwned")


def test_bad_input_is_one_line(fleet):
    cases = [
        (["status", "--store", "nowhere.sqlite"], 1, "--store nowhere.sqlite does not exist: run 'sensorpub bridge"),
        (["status", "--wait", "0"], 1, "--wait must be a number of seconds above 0"),
        (["status", "--port", str(free_port()), "--wait", "1"], 3, "nothing listens on localhost:"),
        (["status", "--as", "ghost", "--wait", "1"], 1, "no verifier identity 'ghost'"),
        (["status", "--store", "ftp://x"], 1, "is not a store"),
    ]
    for argv, code, text in cases:
        r = run_cli(*argv)
        errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
        assert r.returncode == code and len(errors) == 1 and text in errors[0], (argv, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (fleet.root.parent.parent / "nowhere.sqlite").exists()


def test_a_battery_device_between_readings_is_asleep_not_offline():
    now = time.time()
    row = summarize("bat1", [reading("bat1", 0, now - 30, now - 29)],
                    {"doc": json.dumps({"state": "offline", "reason": "sleeping"}), "updated_at": now - 28}, now)
    assert row["state"] == "asleep" and "offline" not in row["flags"], row
    lost = summarize("bat1", [], {"doc": json.dumps({"state": "offline", "reason": "lost"}), "updated_at": now}, now)
    assert lost["state"] == "offline" and "offline" in lost["flags"], lost  # the control: a lost one is offline
