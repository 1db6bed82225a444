"""The real ESP32 board files on the virtual ESP32: flashed by `sensorpub flash` through real mpremote,
joining the emulated Wi-Fi, syncing time, publishing what `sensorpub verify` accepts; sensor, Wi-Fi
and flash faults scripted from the host. Each board runs a different MicroPython release, so the
frozen umqtt.simple differs too (the real copy when UMQTT_VERSIONS has it, else the stand-in)."""
import json
import os
import re
import time

import pytest

from board_helpers import Console
from conftest import run_cli
from helpers import Collector, client_for
from host_tools.verify import Tracker, validate
from host_tools.vboard import VBoard

WIFI = {"SENSORPUB_WIFI_PASSWORD": "sensorpub-wifi"}


def start(name, board, micropython=None, umqtt=None):
    args = ["vboard", "start", "--name", name, "--board", board, "--erase"]
    if micropython:
        args += ["--micropython", micropython]
    if umqtt:
        args += ["--umqtt", umqtt]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return VBoard(name), r.stderr


def flash(name, broker, *extra, env=WIFI, board=None):
    args = ["flash", "--port", f"vboard:{name}", "--device", "dev1", "--broker-port", str(broker.port),
            "--interval", "1", "--wifi-ssid", "sensorpub-lab", "--set", "backoff_cap_s=4", *extra]
    if board:
        args += ["--board", board]
    return run_cli(*args, env=env)


def hw(name, *assignments):
    r = run_cli("vboard", "hw", "--name", name, *assignments)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def esp(home, fleet, broker):
    started = []

    def do(board, micropython=None, sensor=None, umqtt=None, sets=()):
        vb, said = start("e0", board, micropython, umqtt)
        started.append(vb)
        extra = ["--set", f"sensor={sensor}"] if sensor else []
        for kv in sets:
            extra += ["--set", kv]
        con = Console(vb, broker)  # before flashing: the board may log its first lines before flash returns
        r = flash("e0", broker, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
        return vb, con, r.stderr

    yield do
    for vb in started:
        vb.stop()


@pytest.mark.parametrize("board,micropython,sensor,fields", [
    ("esp32_generic", "1.24", None, {"temp_c", "humidity_pct"}),       # DHT22, umqtt.simple 1.4.0
    ("esp32_generic", "1.26", "ds18b20", {"temp_c"}),                  # DS18B20, umqtt.simple 1.6.0
    ("esp32_s3", "1.27", None, {"temp_c"}),                            # internal sensor, umqtt.simple 1.7.0
    ("esp32_c3", "1.28", None, {"temp_c"}),
])
def test_board_is_flashed_joins_wifi_syncs_time_and_publishes(esp, fleet, broker, board, micropython, sensor, fields):
    vb, con, said = esp(board, micropython, sensor, sets=["health_every=1"])
    assert f"-> board {board}" in said and f"MicroPython {micropython}." in said, said  # probed, inferred
    r = run_cli("verify", "--port", str(broker.port), "--device", "dev1", "--count", "3", "--timeout", "40",
                "--json", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr + con.evidence()
    con.expect(r"Wi-Fi joined sensorpub-lab")
    text = con.text()
    assert "Traceback" not in text and "BUG" not in text, con.evidence()
    sub = client_for(fleet, "verifier", broker.port)
    col = Collector(sub, "devices/dev1/telemetry")
    topic, payload = col.wait_for(1, timeout=10)[0]
    reading, why = validate(topic, payload)
    assert why is None and fields <= set(reading), payload
    assert reading["ts"] is not None and abs(reading["ts"] - time.time()) < 30  # NTP-synced, not the 2000 epoch
    # health in every reading here: the Wi-Fi's RSSI as the emulated network reports it (vboard hw default),
    # certificate days from the board's own clock and its port's epoch
    assert reading["rssi"] == -58 and 360 <= reading["cert_days"] <= 365 and reading["heap_free"] > 0, payload
    sub.disconnect()


def test_dht_timeout_gives_sensor_error_and_publishing_goes_on(esp, fleet, broker):
    vb, con, _ = esp("esp32_generic")
    sub = client_for(fleet, "verifier", broker.port)
    col = Collector(sub, "devices/dev1/telemetry")
    col.wait_for(1, timeout=20)
    hw("e0", "dht22.fault=timeout")
    con.mark()
    con.expect(r"published seq", count=3, timeout=20)
    hw("e0", "dht22.fault=null")
    con.expect(r"published seq", count=6, timeout=20)
    msgs = [json.loads(p) for _, p in col.messages]
    errors = [m for m in msgs if m["status"] == "sensor_error"]
    assert errors and ("110" in errors[0]["error"] or "ETIMEDOUT" in errors[0]["error"]), errors[:1]
    assert msgs[-1]["status"] == "ok", msgs[-1]
    seqs = [m["seq"] for m in msgs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    sub.disconnect()


def test_wifi_drop_is_one_clear_line_then_reconnects_and_loses_nothing(esp, fleet, broker):
    vb, con, _ = esp("esp32_generic")
    sub = client_for(fleet, "verifier", broker.port)
    col = Collector(sub, "devices/dev1/telemetry")
    col.wait_for(2, timeout=20)
    con.mark()
    hw("e0", "wifi.up=false")
    con.expect(r"Wi-Fi [^\n]*(lost|not joined)", timeout=20)
    time.sleep(3)  # readings keep being taken while the access point is gone
    hw("e0", "wifi.up=true")
    con.expect(r"Wi-Fi joined", timeout=30)
    con.expect(r"published seq \d+ queued 0", timeout=30)
    time.sleep(1)
    t = Tracker()
    for topic, payload in col.messages:
        t.feed(topic, payload)
    s = t.devices["dev1"].summary()
    assert s["gaps"] == 0 and s["valid"] >= 6, (s, con.evidence())
    assert "Traceback" not in con.text() and "BUG" not in con.text(), con.evidence()
    # on schedule while the access point was gone: the Wi-Fi join loop takes the readings as they fall due
    by_seq = {m["seq"]: m["ts"] for m in (json.loads(p) for _, p in col.messages)}
    steps = [by_seq[k + 1] - by_seq[k] for k in sorted(by_seq)
             if k + 1 in by_seq and by_seq[k] is not None and by_seq[k + 1] is not None]  # ts null before NTP
    assert steps and max(steps) <= 2.3, (steps, con.evidence())
    sub.disconnect()


def test_wrong_wifi_password_is_one_clear_line_and_backs_off(home, fleet, broker):
    vb, _ = start("e0", "esp32_generic")
    try:
        con = Console(vb, broker)
        r = flash("e0", broker, "--set", "wifi_timeout_s=2", env={"SENSORPUB_WIFI_PASSWORD": "not-the-password"})
        assert r.returncode == 0, r.stderr
        found = con.expect(r"Wi-Fi 'sensorpub-lab' not joined[^\n]*wrong password[^\n]*attempt (\d+), window (\d+) s",
                           timeout=40, count=3)
        assert [int(m.group(2)) for m in found] == [1, 2, 4], con.evidence()
        assert "not-the-password" not in con.text()  # never printed
        assert "Traceback" not in con.text() and "published" not in con.text()
    finally:
        vb.stop()


@pytest.mark.parametrize("start_args,flash_board,line", [
    (("esp32_s3", "1.28", None), "esp32_c3", r"--board esp32_c3 does not fit this board: it is [^\n]*ESP32S3"),
    (("esp32_generic", "1.22", None), None, r"MicroPython 1\.22\.\d+ on the board is older than 1\.23"),
    (("esp32_generic", "1.28", "none"), None, r"has no umqtt\.simple: flash a stock ESP32 build"),
])
def test_flash_refuses_what_cannot_work_in_one_line(home, fleet, broker, start_args, flash_board, line):
    vb, _ = start("e0", *start_args)
    try:
        r = flash("e0", broker, board=flash_board)
        assert r.returncode == 1, r.stdout + r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert re.search(line, last), r.stderr
        assert "Traceback" not in r.stderr
    finally:
        vb.stop()


def test_every_board_imports_after_flashing(home, fleet, broker):
    # the manifest is computed from the board file's imports: nothing a board needs is left behind
    from board_helpers import mpremote
    for board in ("esp32_generic", "esp32_s3", "esp32_c3"):
        vb, _ = start("e0", board)
        try:
            r = flash("e0", broker, "--no-reset")
            assert r.returncode == 0, r.stderr
            r = mpremote(vb.port, "exec", "import board, app, session\nprint('NAME', board.NAME, board.Board)\n"
                         "for s in board.Board.SENSORS:\n print('SENSOR', s, __import__('_sensor_' + s).Sensor)")
            assert r.returncode == 0 and f"NAME {board}" in r.stdout, r.stdout + r.stderr
            assert r.stdout.count("SENSOR ") == 3 and "<class 'Sensor'>" in r.stdout, r.stdout  # each one, flashed
        finally:
            vb.stop()


def test_missing_module_at_boot_is_one_clear_line_inside_the_restart_loop(esp, fleet, broker):
    from board_helpers import mpremote
    vb, con, _ = esp("esp32_c3")
    con.expect(r"published seq", timeout=20)
    con.mark()
    r = mpremote(vb.port, "fs", "rm", ":/_esp32.py", "+", "reset")  # as an interrupted flash would leave it
    assert r.returncode == 0, r.stderr
    con.expect(r"ERROR firmware incomplete \([^)]*_esp32[^)]*\): re-run 'sensorpub flash'; retrying in 5 s", timeout=20)
    text = con.since_boot()
    assert "Traceback" not in text and ">>>" not in text, con.evidence()  # never dropped to the REPL


def test_watchdog_restarts_a_hung_board_and_the_status_says_why(esp, fleet, broker):
    # wdt_s on: a driver that never returns stops the feeding; the board restarts with reset cause WDT and
    # its retained online status says so, and nothing already queued is lost
    vb, _ = start("e0", "esp32_generic")
    try:
        con = Console(vb, broker)
        r = flash("e0", broker, "--set", "wdt_s=17", "--set", "connect_timeout_s=1")
        assert r.returncode == 0, r.stdout + r.stderr
        con.expect(r"watchdog on: a hang restarts the board after 17 s", timeout=20)
        sub = client_for(fleet, "verifier", broker.port)
        col = Collector(sub, "devices/dev1/status")
        # flash ends with machine.reset(): a hard reset
        first = json.loads(col.wait_for(1, timeout=20)[0][1])
        assert {k: first[k] for k in ("state", "reset", "board")} == {"state": "online", "reset": "hard",
                                                                       "board": "esp32_generic"}, first
        con.mark()
        hw("e0", "dht22.fault=hang")
        con.expect(r"watchdog on", timeout=40)  # the firmware again, after the WDT reset
        hw("e0", "dht22.fault=null")
        states = [json.loads(p) for _, p in col.wait_for(3, timeout=30)]
        # the hang dropped the link without a DISCONNECT: the Last Will, then online with the cause
        assert states[1] == {"state": "offline", "reason": "lost"}, states
        assert states[2]["state"] == "online" and states[2]["reset"] == "watchdog", states
        assert states[2]["boots"] == first["boots"] + 1, states  # the boot count lives on flash
        sub.disconnect()
    finally:
        vb.stop()


def test_no_tls_before_the_clock_is_set_and_the_line_says_so(home, fleet, broker):
    # an unset clock fails certificate checks with the code of an untrusted certificate (-0x2700): the firmware
    # waits for NTP, says why, keeps sampling, and connects once the time is known
    vb, _ = start("e0", "esp32_generic")
    try:
        hw("e0", "ntp.reachable=false")
        con = Console(vb, broker)
        r = flash("e0", broker)
        assert r.returncode == 0, r.stdout + r.stderr
        con.expect(r"WARN network down: clock not set: no answer from NTP server 'pool.ntp.org' \(ntp_host\)[^\n]*"
                   r"reconnect in", timeout=30, count=2)
        assert "connected to" not in con.text() and "dev1" not in broker.log_file.read_text()
        hw("e0", "ntp.reachable=true")
        con.expect(r"published seq \d+ queued 0", timeout=30)
        assert "Traceback" not in con.text(), con.evidence()
    finally:
        vb.stop()


def test_no_key_or_wifi_password_in_any_console_log_or_output(home, fleet, broker):
    # what a user pastes into a bug report: the console, the broker log, the CLI's own output
    import base64
    vb, said = start("e0", "esp32_generic")
    try:
        con = Console(vb, broker)
        r = flash("e0", broker)
        assert r.returncode == 0, r.stderr
        con.expect(r"published seq \d+", timeout=30, count=2)
        r2 = run_cli("verify", "--port", str(broker.port), "--device", "dev1", "--count", "1", "--timeout", "20")
        texts = {"console": vb.console_log.read_bytes().decode("utf-8", "replace"),
                 "broker log": broker.log_file.read_text(errors="replace"),
                 "cli": said + r.stdout + r.stderr + r2.stdout + r2.stderr}
        key = (fleet.device_dir("dev1") / "client.key.der").read_bytes()
        secrets = [WIFI["SENSORPUB_WIFI_PASSWORD"], key.hex()[-40:], base64.b64encode(key).decode()[-40:],
                   (fleet.device_dir("dev1") / "client.key.pem").read_text().splitlines()[1]]
        for where, text in texts.items():
            for secret in secrets:
                assert secret not in text, f"a secret in the {where}"
        assert "sensorpub-lab" in texts["console"]  # the control: the SSID is shown, the password is not
    finally:
        vb.stop()
