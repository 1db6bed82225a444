"""Battery mode and remote config: figures for `make bench` (tools/bench.py).

battery(): a virtual ESP32 (the real board files, emulated Wi-Fi join and DHT22 timing) in deep_sleep mode
takes `readings` readings a second apart, connecting every `every` wakes; the figures are the time awake per
reading (each wake's own log clock, from its interpreter's start to its deep sleep or its end) and the TLS
handshakes per reading (its 'connected to' lines).

remote_config(): a virtual board publishing every second; the time `sensorpub config set` takes from its
start to the device's answer, against `sensorpub flash` making the same change until the board runs it (the
way without remote config). Both through the real CLI, as a user runs them.
"""
import os
import re
import subprocess
import sys
import time

from host_tools.vboard import VBoard

AWAKE = re.compile(r"deep sleep for \d+ ms, \d+ queued, awake (\d+) ms")
DONE = re.compile(r"\[\s*([\d.]+)\] INFO done cycles=")
WIFI = {"SENSORPUB_WIFI_PASSWORD": "sensorpub-wifi"}


def _cli(*args, env=None, timeout=120) -> float:
    """Run `sensorpub ARGS`; seconds it took. Exits the bench on failure, with its message."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "host_tools", *args], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})), timeout=timeout)
    if r.returncode:
        raise SystemExit(f"bench_battery: sensorpub {' '.join(args[:2])} failed: {r.stderr.strip()[-400:]}")
    return time.monotonic() - t0


def _wait(vb: VBoard, pattern: str, timeout: float, start: int = 0) -> str:
    """The console from byte `start` on, once `pattern` is in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = vb.console_log.read_bytes()[start:].decode(errors="replace")
        if re.search(pattern, text):
            return text
        time.sleep(0.1)
    raise SystemExit(f"bench_battery: {pattern!r} not on the console within {timeout:.0f} s")


def battery(broker, every: int, readings: int = 20, name: str = "bat") -> dict:
    vb = VBoard(name)
    vb.start(erase=True, board="esp32_generic")
    try:
        start = vb.console_log.stat().st_size  # the log of an earlier run is kept
        _cli("flash", "--port", f"vboard:{name}", "--device", "dev1", "--broker-port", str(broker.port),
             "--interval", "1", "--wifi-ssid", "sensorpub-lab", "--set", "deep_sleep=true",
             "--set", f"publish_every={every}", "--set", f"max_cycles={readings}", env=WIFI)
        text = _wait(vb, DONE.pattern, readings * 3 + 60, start)
        awake_ms = sum(int(m) for m in AWAKE.findall(text)) + float(DONE.search(text).group(1)) * 1000
        handshakes = len(re.findall(r"connected to \S+ with TLS", text))
        return {"publish_every": every, "readings": readings, "awake_ms_per_reading": awake_ms / readings,
                "handshakes_per_reading": handshakes / readings}
    finally:
        vb.stop()


def remote_config(broker, name: str = "cfg") -> dict:
    vb = VBoard(name)
    vb.start(erase=True)
    try:
        port = ["--broker-port", str(broker.port)]
        _cli("flash", "--port", f"vboard:{name}", "--device", "dev1", *port, "--interval", "1")
        _wait(vb, r"published seq 2 ", 30)
        start, t0 = vb.console_log.stat().st_size, time.monotonic()
        _cli("flash", "--port", f"vboard:{name}", "--device", "dev1", *port, "--interval", "5")
        _wait(vb, r"publishing to \S+ every 5 s", 30, start)  # the board runs the change
        flash_s = time.monotonic() - t0  # first: a remote override would stay on top of a re-flash
        set_s = [_cli("config", "set", "--device", "dev1", f"interval_s={n}", "--port", str(broker.port),
                      "--timeout", "30") for n in (2, 3, 4)]
        return {"config_set_s": sorted(set_s)[1], "flash_s": flash_s}
    finally:
        vb.stop()
