"""`sensorpub fleet`: 20 real-firmware virtual boards against a real broker, every reading delivered; status and down."""
import json
import os
import time

import pytest

from conftest import run_cli
from helpers import persistent_verifier
from host_tools import fleet_run
from host_tools.verify import Tracker
from host_tools.vboard import VBoard

COUNT = 20
NAMES = [f"dev{i:03d}" for i in range(1, COUNT + 1)]


@pytest.fixture
def cleanup(home):
    yield
    fleet_run.down("demo")  # whatever the test left running


def _wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_fleet_up_delivers_every_reading_then_status_and_down(fleet, broker, cleanup):
    seen = []
    sub = persistent_verifier(fleet, broker.port, seen, client_id="fleet-verifier")
    try:
        r = run_cli("fleet", "up", "--count", str(COUNT), "--interval", "2", timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"{COUNT} of {COUNT} boards up for fleet 'demo'" in r.stdout, r.stdout
        assert "fleet up: 100%" in r.stderr  # the progress bar, on stderr

        def readings():
            t = Tracker()
            for topic, payload in list(seen):
                t.feed(topic, payload)
            return {n: t.devices[n].summary() for n in NAMES if n in t.devices}

        # every device: at least three readings, from seq 0 on
        _wait(lambda: all((s["last_seq"] or 0) >= 2 for s in readings().values()) and len(readings()) == COUNT, 30)
        for name, s in readings().items():
            assert s["first_seq"] == 0 and s["gaps"] == 0, (name, s)
            assert s["malformed"] == 0 and s["out_of_order"] == 0 and s["valid"] == s["last_seq"] + 1, (name, s)
    finally:
        sub.disconnect()
        sub.loop_stop()

    r = run_cli("fleet", "status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["running"] == COUNT and [b["name"] for b in st["boards"]] == NAMES
    assert all(b["running"] and b["pid"] and b["rss_kb"] and b["pss_kb"] for b in st["boards"]), st["boards"][:2]
    assert st["supervisors"] and sum(s["boards"] for s in st["supervisors"]) == COUNT
    pids = [b["pid"] for b in st["boards"]] + [s["pid"] for s in st["supervisors"]]

    # one board of the fleet answers the single-board tools, and stops alone
    assert VBoard("dev020").stop()
    assert fleet_run.status("demo")["running"] == COUNT - 1

    r = run_cli("fleet", "down")
    assert r.returncode == 0 and f"stopped {COUNT - 1} virtual boards" in r.stdout, r.stdout + r.stderr
    assert not [p for p in pids if _alive(p)]
    r = run_cli("fleet", "status", "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["running"] == 0


def test_fleet_up_needs_the_broker(fleet):
    r = run_cli("fleet", "up", "--count", "2")
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode == 1 and len(errors) == 1, r.stderr
    assert "the broker of fleet 'demo' is not running: start it first with 'sensorpub broker start" in errors[0]
    assert not (fleet.devices_dir / "dev001").exists()  # refused before anything was made
