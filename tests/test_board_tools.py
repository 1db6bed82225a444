"""What the host tools promise about a board, each checked against a real virtual board: flash compares what
the board reads back, a flash that fills up mid-write says so, console -n shows the last lines, and the
virtual board has the heap it was started with."""
import pytest

from board_helpers import mpremote
from conftest import run_cli
from host_tools.errors import CommandError
from host_tools.flash import build_config, flash
from host_tools.transport import Device
from host_tools.vboard import VBoard


@pytest.fixture
def board(home):
    vb = VBoard("tools0")
    vb.start(erase=True)
    yield vb
    vb.stop()


def test_flash_refuses_a_board_that_stores_other_bytes_than_it_was_sent(fleet, board, monkeypatch):
    real = Device.write_file

    def flipping(self, path, data):  # a flaky cable or a worn flash: one byte differs on the board
        real(self, path, data[:-1] + bytes([data[-1] ^ 1]) if path.endswith("app.py") else data)
    monkeypatch.setattr(Device, "write_file", flipping)
    with pytest.raises(CommandError, match=r"/app.py on the board does not match what was written .*flash again"):
        flash("vboard:tools0", "demo", "dev1", "unix", build_config("dev1", "localhost", 8883, 30), reset=False)
    monkeypatch.setattr(Device, "write_file", real)  # positive control: the same flash with honest writes
    files = flash("vboard:tools0", "demo", "dev1", "unix", build_config("dev1", "localhost", 8883, 30), reset=False)
    assert "/app.py" in files


def test_flash_filling_up_in_the_middle_of_a_file_says_so(home):
    vb = VBoard("tiny")
    vb.start(flash_kb=64, erase=True)
    try:
        dev = Device("vboard:tiny")
        try:
            free = dev.free_bytes()
            dev.write_file("/fits.bin", bytes(1024))  # positive control: a write that fits
            with pytest.raises(CommandError, match=r"flash is full while writing /big.bin: free space or erase it"):
                dev.write_file("/big.bin", bytes(free + 8192))
        finally:
            dev.close()
    finally:
        vb.stop()


def test_console_n_prints_the_last_lines(home):
    vb = VBoard("c0")
    vb.dir.mkdir(parents=True, exist_ok=True)
    vb.console_log.write_text("".join(f"line {i}\r\n" for i in range(1, 51)))
    r = run_cli("console", "--port", "vboard:c0", "-n", "3")
    assert (r.returncode, r.stdout) == (0, "line 48\nline 49\nline 50\n"), r.stderr


@pytest.mark.parametrize("heapsize, low, high", [("64k", 60_000, 65_536), ("300k", 290_000, 307_200)])
def test_the_virtual_board_has_the_heap_it_was_started_with(home, heapsize, low, high):
    vb = VBoard("h0")
    vb.start(heapsize=heapsize, erase=True)
    try:
        r = mpremote(vb.port, "exec", "import gc; gc.collect(); print(gc.mem_free() + gc.mem_alloc())")
        assert r.returncode == 0, r.stderr
        assert low <= int(r.stdout.split()[-1]) <= high, r.stdout
    finally:
        vb.stop()


def test_console_hides_mpremote_raw_repl_traffic_unless_raw(home):
    vb = VBoard("c1")
    vb.dir.mkdir(parents=True, exist_ok=True)
    vb.console_log.write_text(
        "[    1.000] INFO published seq 1 queued 0\n"
        "raw REPL; CTRL-B to exit\r\n>OK\x04\x04>R\x01\x00\x01\x01\x04{'/main.py': (372, 'f3')}\n"
        "\x04\x04>R\x01\x00\x01\x04vboard: boot, running boot.py and main.py\r\n"
        "[    0.002] INFO device dev1, broker localhost:8883, board unix\n", newline="")
    r = run_cli("console", "--port", "vboard:c1", "-n", "10")
    assert r.stdout.splitlines() == [
        "[    1.000] INFO published seq 1 queued 0",
        "-- mpremote connected: its raw REPL traffic is hidden (--raw shows it) --",
        "vboard: boot, running boot.py and main.py",
        "[    0.002] INFO device dev1, broker localhost:8883, board unix"], r.stdout
    r = run_cli("console", "--port", "vboard:c1", "-n", "10", "--raw")
    assert "raw REPL; CTRL-B to exit" in r.stdout and "{'/main.py'" in r.stdout


# --- --fleet on vboard, flash and console: a fleet's own board ---------------------------------------

def test_two_fleets_boards_do_not_collide_and_flash_finds_its_fleets(home):
    import json
    from host_tools import pki
    pki.init_ca("site1")
    pki.issue_device("site1", "dev1")
    started = []
    try:
        for fleet in ("site1", "site2"):
            r = run_cli("vboard", "start", "--fleet", fleet, "--erase")
            assert r.returncode == 0 and f"virtual board '{fleet}-vb0' running" in r.stderr, r.stderr
            started.append(VBoard(f"{fleet}-vb0"))
        one, two = (vb.state() for vb in started)
        assert one["pty"] != two["pty"] and started[0].image != started[1].image  # each its own pty and flash
        assert VBoard("vb0").state() is None  # the default fleet's board was not started
        r = run_cli("vboard", "port", "--fleet", "site2")
        assert (r.returncode, r.stdout.strip()) == (0, two["pty"]), r.stderr
        assert run_cli("vboard", "status", "--fleet", "site1").returncode == 0
        assert run_cli("vboard", "status").returncode == 3  # vb0: not running

        r = run_cli("flash", "--fleet", "site1", "--port", "vboard", "--device", "dev1", "--board", "unix",
                    "--no-reset")
        assert r.returncode == 0 and "on vboard:site1-vb0" in r.stdout, r.stderr
        cfg = json.loads(mpremote(one["pty"], "exec", "print(open('/config.json').read())").stdout)
        assert cfg["device_id"] == "dev1"
        listing = mpremote(two["pty"], "exec", "import os; print(os.listdir('/'))").stdout
        assert "config.json" not in listing  # site2's board was left alone

        r = run_cli("vboard", "stop", "--fleet", "site1")
        assert (r.returncode, r.stdout.strip()) == (0, "stopped")
        assert started[0].state() is None and started[1].state() is not None
    finally:
        for vb in started:
            vb.stop()


def test_console_fleet_reads_that_fleets_board_or_says_where_its_boards_are(home):
    for name, text in (("vb0", "demo's board"), ("site1-vb0", "site1's board")):
        vb = VBoard(name)
        vb.dir.mkdir(parents=True, exist_ok=True)
        vb.console_log.write_text(f"[    1.000] INFO {text}\n")
    r = run_cli("console", "--fleet", "site1", "--port", "vboard", "-n", "5")
    assert (r.returncode, r.stdout) == (0, "[    1.000] INFO site1's board\n"), r.stderr
    r = run_cli("console", "--port", "vboard", "-n", "5")  # no --fleet: the default fleet's vb0, as before
    assert (r.returncode, r.stdout) == (0, "[    1.000] INFO demo's board\n"), r.stderr

    r = run_cli("console", "--fleet", "site2", "--port", "vboard")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "virtual board 'site2-vb0' of fleet 'site2' has no console yet: start it with 'sensorpub vboard start " \
           "--fleet site2', or --port vboard:vb0 for the board started without --fleet" in r.stderr, r.stderr

    # a fleet whose boards came from 'fleet up': they are named after their devices (run/fleet-<fleet>/boards.json)
    manifest = home / "run" / "fleet-load" / "boards.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text('{"load001": "load-load001", "load002": "load-load001"}')
    r = run_cli("console", "--fleet", "load", "--port", "vboard")
    assert r.returncode == 1 and "its 2 boards from 'fleet up' are named after their devices (load001..load002): " \
                                 "--port vboard:load001" in r.stderr, r.stderr
    r = run_cli("vboard", "status", "--fleet", "load")
    assert r.returncode == 3 and "'sensorpub fleet status --fleet load'" in r.stderr, r.stderr
