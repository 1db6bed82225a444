"""`sensorpub bridge`: every reading into the store exactly once, across SIGKILLs of the bridge, redeliveries,
a broker restart and failing handlers; bad input is one line."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import free_port
from helpers import client_for
from host_tools.store import open_store, store_path
from pg import pg_server, pg_url  # noqa: F401  (fixtures)

KILLS = 5
SEED = int(os.environ.get("CHAOS_SEED", "7"))


@pytest.fixture
def fleet(fleet):
    """The conftest fleet, plus the bridge's own verifier identity (before the broker starts: it is in the ACL)."""
    from host_tools import pki
    pki.issue_verifier("demo", name="bridge")
    return fleet


class Bridge:
    """`python -m host_tools bridge ARGS` as a real process; its output goes to files (a full pipe would block it)."""
    runs = 0
    alive = []  # every one started, so a failed test leaves none behind

    def __init__(self, home, *args):
        Bridge.runs += 1
        self.out, self.err = home / f"bridge-{Bridge.runs}.out", home / f"bridge-{Bridge.runs}.err"
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.p = subprocess.Popen([sys.executable, "-m", "host_tools", "bridge", *args], stdout=o, stderr=e)
        Bridge.alive.append(self.p)

    def stderr(self):
        return self.err.read_text()

    def stdout(self):
        return self.out.read_text()

    def evidence(self):
        return f"--- bridge stderr ---\n{self.stderr()[-3000:]}\n--- bridge stdout ---\n{self.stdout()[-1500:]}"

    def wait_for(self, pattern, timeout=20.0):
        """Until `pattern` shows on stderr; fails at once if the bridge exited."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.stderr()):
            assert self.p.poll() is None, f"bridge exited {self.p.returncode}\n{self.evidence()}"
            assert time.monotonic() < deadline, f"{pattern!r} not seen within {timeout} s\n{self.evidence()}"
            time.sleep(0.05)

    def finish(self, timeout=60):
        self.p.wait(timeout)
        return self.p.returncode

    def kill(self, sig=signal.SIGKILL):
        self.p.send_signal(sig)
        return self.finish(15)


@pytest.fixture(autouse=True)
def no_bridge_left():
    yield
    while Bridge.alive:
        p = Bridge.alive.pop()
        if p.poll() is None:
            p.kill()
            p.wait(10)


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def reading(seq, **kw):
    m = {"device_id": "dev1", "seq": seq, "ts": 1795459200.0 + seq, "uptime_s": seq, "status": "ok", "temp_c": 20.5}
    m.update(kw)
    return json.dumps(m, separators=(",", ":"))


def publish(dev, payloads, topic="devices/dev1/telemetry", retain=False):
    for p in payloads:
        dev.publish(topic, p, qos=1, retain=retain).wait_for_publish(5)


def seqs(url=None):
    s = open_store(url, "demo")
    try:
        return [r["seq"] for r in s.readings("dev1")]
    finally:
        s.close()


def statuses(url=None):
    s = open_store(url, "demo")
    try:
        return s.statuses()
    finally:
        s.close()


def test_readings_stored_once_across_runs_with_status_malformed_and_duplicates(home, fleet, broker):
    b = Bridge(home, "--port", str(broker.port))
    b.wait_for(r"subscribed on localhost:\d+ as sensorpub-verifier-bridge \(new session\)")
    dev = client_for(fleet, "dev1", broker.port)
    try:
        publish(dev, [reading(s) for s in range(5)] + [b'{"device_id":"dev1","seq":"x"}'])
        publish(dev, [b'{"state":"online","reset":"hard"}'], topic="devices/dev1/status", retain=True)
        wait(lambda: len(seqs()) == 5 and statuses(), 15, "5 readings and a status")
        assert b.kill(signal.SIGTERM) == 0, b.evidence()  # a planned stop: the summary, exit 0
        assert "bridge: 5 readings stored, 0 duplicates skipped, 1 malformed" in b.stdout(), b.evidence()
        assert re.search(r"dev1 seq=4 ok temp_c=20.5", b.stdout())          # one line per stored reading
        assert "dev1 MALFORMED: seq missing or not a non-negative integer" in b.stderr()
        # while the bridge is away: five more, and seq 3 again (a device resending after a power cut)
        publish(dev, [reading(s) for s in range(5, 10)] + [reading(3, temp_c=99.0)])
    finally:
        dev.disconnect()
        dev.loop_stop()
    b = Bridge(home, "--port", str(broker.port), "--once-idle", "1", "--json")
    assert b.finish() == 0, b.evidence()
    summary = json.loads(b.stdout())
    assert (summary["stored"], summary["duplicates"], summary["malformed"]) == (5, 1, 0), summary
    assert summary["store"] == str(store_path("demo"))
    assert "(session resumed)" in b.stderr()
    s = open_store(None, "demo")
    rows = s.readings("dev1")
    assert [r["seq"] for r in rows] == list(range(10))
    assert json.loads(rows[3]["payload"])["temp_c"] == 20.5                # the first copy kept
    assert rows[0]["ts"] == 1795459200.0 and abs(rows[0]["received_at"] - time.time()) < 60
    st = s.statuses()["dev1"]
    assert st["state"] == "online" and json.loads(st["doc"]) == {"state": "online", "reset": "hard"}
    assert summary["statuses"] == 0          # the retained status came again, unchanged: not a change
    s.close()


def test_the_bridge_rides_out_a_broker_crash(home, fleet, broker):
    b = Bridge(home, "--port", str(broker.port))
    try:
        b.wait_for(r"subscribed on")
        broker.kill()                        # kill -9: no clean shutdown
        b.wait_for(r"lost the broker")
        broker.start()
        b.wait_for(r"subscribed on .*\(session resumed\)", timeout=40)
        dev = client_for(fleet, "dev1", broker.port)
        publish(dev, [reading(s) for s in range(3)])
        dev.disconnect()
        wait(lambda: seqs() == [0, 1, 2], 15, "3 readings after the broker came back")
    finally:
        b.kill(signal.SIGTERM)


FLAKY = """
from pathlib import Path

def on_reading(r):
    log = Path("attempts.log")
    with log.open("a") as f:
        f.write("%d\\n" % r["seq"])
    if log.read_text().split().count(str(r["seq"])) <= FAILS:
        raise ConnectionError("downstream busy")
    with open("handled.log", "a") as f:
        f.write("%d\\n" % r["seq"])
"""


def handled_log(home):
    p = home / "handled.log"
    return [int(x) for x in p.read_text().split()] if p.exists() else []


def test_a_handler_that_fails_twice_is_retried_and_each_reading_handled_once(home, fleet, broker):
    (home / "flaky.py").write_text("FAILS = 2\n" + FLAKY)
    b = Bridge(home, "--port", str(broker.port), "--once-idle", "30", "--handler", "flaky:on_reading")
    b.wait_for("subscribed on")
    dev = client_for(fleet, "dev1", broker.port)
    publish(dev, [reading(s) for s in range(3)])
    wait(lambda: len(handled_log(home)) == 3, 30, "3 readings handled")
    publish(dev, [reading(1), reading(3)])  # 1 again, after it was handled: not handled again; 3 shows it was seen
    dev.disconnect()
    wait(lambda: len(handled_log(home)) == 4, 30, "reading 3 handled")
    assert b.kill(signal.SIGTERM) == 0, b.evidence()
    assert handled_log(home) == [0, 1, 2, 3], b.evidence()
    attempts = (home / "attempts.log").read_text().split()
    assert sorted(attempts) == [str(q) for q in range(4) for _ in range(3)], attempts  # two failures each, then success
    assert "4 readings stored, 1 duplicates skipped, 0 malformed, 4 handled, 8 handler retries" in b.stdout(), \
        b.evidence()
    fails = re.findall(r"handler failed on dev1 seq=(\d): ConnectionError: downstream busy \(attempt (\d)\); "
                       r"retrying in [0-9.]+ s", b.stderr())
    assert sorted(fails) == sorted((str(q), str(a)) for q in range(4) for a in (1, 2)), b.evidence()
    s = open_store(None, "demo")
    assert [s.handled("dev1", q) for q in range(4)] == [True] * 4
    s.close()


def test_a_reading_stored_but_not_handled_when_killed_is_handled_on_the_next_run(home, fleet, broker):
    (home / "flaky.py").write_text("FAILS = 10**6\n" + FLAKY)   # fails until the bridge is killed
    b = Bridge(home, "--port", str(broker.port), "--handler", "flaky:on_reading")
    b.wait_for("subscribed on")
    dev = client_for(fleet, "dev1", broker.port)
    publish(dev, [reading(0), reading(1)])
    dev.disconnect()
    b.wait_for(r"handler failed on dev1 seq=0: .*\(attempt 2\)")
    b.kill()                                # SIGKILL: reading 0 stored, not handled, not acknowledged
    s = open_store(None, "demo")
    assert s.handled("dev1", 0) is False and handled_log(home) == []
    (home / "flaky.py").write_text("FAILS = 0\n" + FLAKY)
    b = Bridge(home, "--port", str(broker.port), "--once-idle", "1", "--handler", "flaky:on_reading", "--json")
    assert b.finish() == 0, b.evidence()
    summary = json.loads(b.stdout())
    assert handled_log(home) == [0, 1], b.evidence()                    # each exactly once
    assert (summary["handled"], summary["duplicates"], summary["stored"]) == (2, 1, 1), summary
    assert [r["seq"] for r in s.readings()] == [0, 1] and s.handled("dev1", 0) and s.handled("dev1", 1)
    s.close()


class Flaky(BaseHTTPRequestHandler):
    fail_first = 2
    requests = []   # (status, body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 503 if len(Flaky.requests) < Flaky.fail_first else 204
        Flaky.requests.append((status, json.loads(body), self.headers["Content-Type"]))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_a_webhook_that_fails_first_is_retried_until_it_takes_each_reading_once(home, fleet, broker):
    Flaky.requests = []
    srv = HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = Bridge(home, "--port", str(broker.port), "--once-idle", "30",
                   "--webhook", f"http://127.0.0.1:{srv.server_address[1]}/readings")
        b.wait_for("subscribed on")
        dev = client_for(fleet, "dev1", broker.port)
        publish(dev, [reading(s) for s in range(3)])
        dev.disconnect()
        wait(lambda: sum(1 for st, *_ in Flaky.requests if st == 204) == 3, 30, "3 readings taken by the webhook")
        assert b.kill(signal.SIGTERM) == 0, b.evidence()
    finally:
        srv.shutdown()
    assert [st for st, *_ in Flaky.requests] == [503, 503, 204, 204, 204], Flaky.requests
    assert [body["seq"] for st, body, _ in Flaky.requests if st == 204] == [0, 1, 2]
    assert Flaky.requests[0][1] == json.loads(reading(0)) and Flaky.requests[0][2] == "application/json"
    assert len(re.findall(r"handler failed on dev1 seq=0: webhook http://127.0.0.1:\d+/readings answered "
                          r"HTTP 503 Service Unavailable \(attempt \d\)", b.stderr())) == 2, b.evidence()
    assert "2 handler retries" in b.stdout() and "3 handled" in b.stdout(), b.evidence()


def test_bad_input_is_one_line(home, fleet, monkeypatch, capsys):
    from host_tools.cli import main
    monkeypatch.setattr(sys, "path", list(sys.path))  # --handler puts the current folder on it
    (home / "mods.py").write_text("thing = 42\n")
    (home / "broken.py").write_text("raise ValueError('bad\\nconfig')\n")
    cases = [
        (["--as", "nobody"], 1, "no verifier identity 'nobody' in fleet 'demo'"),
        (["--as", "nobody"], 1, "run 'sensorpub pki verifier --name nobody --fleet demo' first"),
        (["--store", "mysql://u:hunter2@db/x"], 1, "--store 'mysql://u:***@db/x' is not a store: use postgresql://"),
        (["--handler", "nocolon"], 1, "--handler 'nocolon': use MODULE:FUNCTION"),
        (["--handler", "nosuchmodule:f"], 1, "--handler: no module 'nosuchmodule'"),
        (["--handler", "mods:missing"], 1, "mods has no 'missing'"),
        (["--handler", "mods:thing"], 1, "mods.thing is a int, not a function"),
        (["--handler", "broken:f"], 1, "importing broken failed: ValueError: bad config"),
        (["--handler", "./nope.py:f"], 1, "nope.py does not exist"),
        (["--webhook", "ftp://example.com/x"], 1, "--webhook 'ftp://example.com/x': use http://"),
        (["--once-idle", "0"], 1, "--once-idle must be a number of seconds above 0"),
        (["--port", str(free_port()), "--once-idle", "1"], 3, "nothing listens on localhost:"),
        (["--handler", "a:b", "--webhook", "http://x/"], 2, "not allowed with argument"),
    ]
    for args, code, text in cases:
        try:
            rc = main(["bridge", *args])
        except SystemExit as e:  # argparse
            rc = e.code
        out, err = capsys.readouterr()
        errors = [ln for ln in err.splitlines() if "error:" in ln]
        assert rc == code and len(errors) == 1 and text in errors[0], (args, rc, err)
        assert "hunter2" not in err and "Traceback" not in err and out == "", (args, err, out)
    assert not store_path("demo").exists()  # refused before anything was written


def _stored(url):
    try:
        return seqs(url)
    except Exception:  # the first bridge may not have made the tables yet
        return []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_acceptance_bridge_killed_5_times_mid_stream_stores_every_reading_once(home, fleet, broker, flashed,
                                                                                backend, request):
    # the board publishes back to back (interval_s 0 with max_cycles: about 200 readings a second here), so every
    # kill lands mid-stream: messages in flight, rows being committed, PUBACKs on their way
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    store_args = ["--store", url] if url else []
    n = 1500
    rng = random.Random(SEED)
    b = Bridge(home, "--port", str(broker.port), "--quiet", *store_args)
    b.wait_for("subscribed on")                             # the session exists: the broker keeps the stream for it
    con = flashed(interval_s=0, max_cycles=n)
    during = 0   # kills while the board was still publishing
    for i in range(KILLS):
        before = len(_stored(url))
        wait(lambda: len(_stored(url)) > before or b.p.poll() is not None, 30, f"bridge run {i + 1} to store")
        assert b.p.poll() is None, b.evidence()
        time.sleep(rng.uniform(0.0, 0.6))                   # a random moment after it stored something
        b.kill()
        during += "done cycles" not in con.text()
        if i < KILLS - 1:
            b = Bridge(home, "--port", str(broker.port), "--quiet", *store_args)
    con.expect(rf"done cycles={n} sent={n}", timeout=60)    # the board took seq 0..n-1; the broker has them all
    b = Bridge(home, "--port", str(broker.port), "--once-idle", "2", "--json", *store_args)
    assert b.finish(120) == 0, b.evidence()
    got = seqs(url)
    dupes = len(got) - len(set(got))
    missing = sorted(set(range(n)) - set(got))
    assert dupes == 0 and not missing and got == list(range(n)), (dupes, missing[:20], len(got), b.evidence())
    s = open_store(url, "demo")
    rows = s.readings("dev1")
    assert all(json.loads(r["payload"])["seq"] == r["seq"] for r in rows)
    s.close()
    print(f"bridge SIGKILL x{KILLS} ({during} while the board published; {backend}, seed {SEED}): {n} readings, "
          f"stored {len(set(got))}, lost 0, duplicates 0")
