"""Shared fixtures: an isolated SENSORPUB_HOME, a fleet PKI, a real Mosquitto on a free port."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption("--port", default=None, help="serial port of a real board for hardware tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="needs a real board: pass --port /dev/ttyUSB0")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


def _port_block():
    """Ports this pytest worker hands out: 400 of its own below the kernel's ephemeral range. A port the
    kernel picked for bind(0) is free only until the next outgoing connection on the machine takes it as
    its local port, and a broker started a moment later then fails with 'already in use'."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    i = int(worker[2:]) if worker[2:].isdigit() else 0
    first = 10000 + 400 * i
    return range(first, first + 400) if first + 400 <= low else None


_PORTS = {"block": _port_block(), "next": 0}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    block = _PORTS["block"]
    for _ in range(len(block) if block else 0):
        port = block[_PORTS["next"] % len(block)]
        _PORTS["next"] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    with socket.socket() as s:  # no block of our own (a narrow or unreadable range): the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """paho clients a test opened with helpers.client_for are stopped after it, so none keeps reconnecting
    (a leftover's reconnect wait spins when a later test stubs time.sleep). Before the fixtures' teardown:
    a client whose broker was stopped first sits in paho's reconnect wait, and stopping it took 1 s."""
    from helpers import stop_clients
    stop_clients()


@pytest.fixture
def home(monkeypatch):
    # not tmp_path: pytest keeps its base 0700, and a broker started by root runs as 'mosquitto', which must be
    # able to enter the home (0711: entered, not listed) to reach its own run directory, as in a user's checkout
    d = Path(tempfile.mkdtemp(prefix="sensorpub-test-"))
    os.chmod(d, 0o711)
    monkeypatch.setenv("SENSORPUB_HOME", str(d))
    monkeypatch.chdir(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fleet(home):
    """A complete fleet 'demo': CA, server (localhost/127.0.0.1), verifier, devices dev1 and dev2."""
    from host_tools import pki
    pki.init_ca("demo")
    pki.issue_server("demo", [], [])
    pki.issue_verifier("demo")
    for d in ("dev1", "dev2"):
        pki.issue_device("demo", d)
    return pki.Fleet("demo")


@pytest.fixture
def broker(fleet):
    from host_tools.broker import Broker
    b = Broker("demo", port=free_port())
    b.start()
    yield b
    b.stop()


def run_cli(*args, env=None, timeout=120):
    """Run `python -m host_tools ARGS` as a user would; returns CompletedProcess (text)."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "host_tools", *args], capture_output=True, text=True,
                          env=e, timeout=timeout)


def umqtt_params():
    """The frozen umqtt.simple sources a firmware suite runs against: the stand-in, and every real copy in
    $UMQTT_VERSIONS. With no real copy, one param that skips with the reason (and fails in CI)."""
    from host_tools.umqtt_versions import real_versions
    real = sorted(real_versions())
    if real:
        return ["standin"] + [f"real-{v}" for v in real]
    return ["standin", "real-missing"]


def need_real(source):
    if source == "real-missing":
        why = ("no real umqtt.simple: set UMQTT_VERSIONS to a folder of versions/<X.Y.Z>/umqtt/simple.py "
               "(CI uses ../shared/umqtt-simple/versions)")
        if os.environ.get("CI"):
            pytest.fail(why + " -- in CI the real clients must run")
        pytest.skip(why)


@pytest.fixture
def umqtt():
    """Which umqtt.simple the virtual board freezes; firmware suites override this with all versions."""
    return "standin"


@pytest.fixture
def vboard(home, umqtt):
    from host_tools.vboard import VBoard
    need_real(umqtt)
    vb = VBoard("t0")
    vb.start(erase=True, umqtt=umqtt)
    yield vb
    vb.stop()


@pytest.fixture
def flashed(fleet, broker, vboard):
    """dev1 flashed onto the virtual board, publishing every second to the test broker."""
    from board_helpers import Console
    from host_tools.flash import build_config, flash
    con = Console(vboard, broker)

    def do(device="dev1", **extra):
        extra.setdefault("backoff_cap_s", 4)
        cfg = build_config(device, "localhost", broker.port, extra.pop("interval_s", 1), extra)
        flash("vboard:t0", "demo", device, "unix", cfg)
        return con

    return do
