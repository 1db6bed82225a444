"""One transport to a board: a thin wrapper around mpremote's SerialTransport.

Takes a serial port (a real ESP32) or the virtual board's pty; `vboard` or `vboard:NAME` names a
running virtual board. Every low-level failure becomes one CommandError with the text users see.
"""
import ast
import contextlib
import errno
import os
import re
import signal
import threading
from typing import Dict, Iterable, Tuple

from .errors import CommandError


# What runs on the board, named and few (tests/test_transport.py runs each on a virtual board). mpremote's
# own fs_* calls take one exchange per file; these take one per batch, which a fleet's flash needs.
MKDIRS = "import os\nfor p in %r:\n try: os.mkdir(p)\n except OSError: pass"  # each parent; existing is fine
REMOVE = "import os\nfor p in %r:\n try: os.remove(p)\n except OSError: pass"  # missing is fine
FILE_INFO = ("import os, hashlib, binascii\nr = {}\nfor p in %r:\n"  # {path: (size, sha256 hex)}, missing left out
             " try:\n  h = hashlib.sha256(); n = 0\n  with open(p, 'rb') as f:\n"
             "   while True:\n    b = f.read(512)\n    if not b: break\n    h.update(b); n += len(b)\n"
             "  r[p] = (n, binascii.hexlify(h.digest()).decode())\n except OSError: pass\nprint(repr(r))")
STATVFS = "__import__('os').statvfs('/')[:4]"
RESET = "import time, machine; time.sleep_ms(100); machine.reset()"  # the 100 ms lets the raw REPL answer first


def resolve_port(port: str) -> str:
    if port == "vboard" or port.startswith("vboard:"):
        from .vboard import VBoard
        return VBoard(port.partition(":")[2] or "vb0").port
    return port


@contextlib.contextmanager
def _deadline(seconds: float, doing: str):
    """A hard limit on one serial exchange: mpremote waits forever on a board that stopped answering."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(*_a):
        raise CommandError(f"the board stopped answering while {doing} (no reply in {seconds:.0f} s): "
                           "reset it (or unplug and replug it) and run the command again")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Device:
    def __init__(self, port: str):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        self.port = resolve_port(port)
        if not os.path.exists(self.port):
            raise CommandError(f"port {self.port} does not exist: plug the board in, check 'ls /dev/tty*', "
                               "or start the virtual board with 'sensorpub vboard start'")
        try:
            self.t = SerialTransport(self.port, baudrate=115200)
        except TransportError as e:
            raise CommandError(f"cannot open {self.port}: {e.args[0]} (is another program, e.g. a console, using it?)") from None
        try:
            with _deadline(20, f"interrupting the firmware on {self.port}"):
                self.t.enter_raw_repl(soft_reset=True)  # interrupts the running firmware
        except (TransportError, OSError) as e:
            self.t.close()
            raise CommandError(f"no MicroPython REPL on {self.port}: {e} (is MicroPython flashed? "
                               "see 'make flash-micropython')") from None

    def exec(self, code: str, timeout: float = 10) -> str:
        from mpremote.transport import TransportError, TransportExecError
        try:
            with _deadline(timeout + 5, f"waiting for the board on {self.port}"):
                out, err = self.t.exec_raw(code, timeout=timeout)
            if err:
                raise TransportExecError(out, err.decode(errors="replace"))
            return out.decode(errors="replace")
        except TransportExecError as e:
            last = e.error_output.strip().splitlines()[-1:] if e.error_output else ["?"]
            if _flash_full(e.error_output):
                raise CommandError("the board's flash is full: remove files (mpremote fs rm) or erase it") from None
            raise CommandError(f"the board said: {last[0]}") from None
        except (TransportError, OSError) as e:
            raise CommandError(f"lost the board on {self.port}: {e}") from None

    def eval(self, expr: str):
        return ast.literal_eval(self.exec(f"print(repr({expr}))").strip())

    def mkdirs(self, path: str) -> None:
        self.exec(MKDIRS % (_parents(path),))

    def free_bytes(self) -> int:
        bs, _frs, _blocks, free = self.eval(STATVFS)
        return bs * free

    def write_file(self, path: str, data: bytes) -> None:
        from mpremote.transport import TransportError, TransportExecError
        try:
            with _deadline(10 + len(data) / 1000, f"writing {path} to {self.port}"):  # mpremote waits forever
                self.t.fs_writefile(path, data, chunk_size=512)
        except TransportExecError as e:
            if _flash_full(e.error_output):
                raise CommandError(f"the board's flash is full while writing {path}: free space or erase it") from None
            raise CommandError(f"writing {path} failed: {e.error_output.strip().splitlines()[-1]}") from None
        except (TransportError, OSError) as e:
            if getattr(e, "errno", None) == errno.ENOSPC:  # mpremote 1.24+ turns the board's error into OSError
                raise CommandError(f"the board's flash is full while writing {path}: free space or erase it") from None
            raise CommandError(f"lost the board on {self.port} while writing {path}: {e}") from None

    def remove(self, paths: Iterable[str]) -> None:
        self.exec(REMOVE % (list(paths),))

    def file_info(self, paths: Iterable[str]) -> Dict[str, Tuple[int, str]]:
        """{path: (size, sha256 hex)} as the board reads them back; missing files are left out."""
        return ast.literal_eval(self.exec(FILE_INFO % (list(paths),), timeout=30).strip())

    def reset(self) -> None:
        """Hard reset, as `mpremote reset` does: boot.py and main.py run afterwards."""
        try:
            self.t.exec_raw_no_follow(RESET)
            self.t.in_raw_repl = False  # the board restarts in its friendly REPL: nothing to exit
            # Return once the rebooted board speaks (its first byte), so the next tool to open the port
            # does not talk to the interpreter that is going away and lose its bytes with it.
            self.t.serial.timeout = 5
            self.t.serial.read(1)
        except Exception:  # e.g. a native-USB board whose port vanishes while it resets
            pass
        self.close()

    def close(self) -> None:
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
            self.t.close()
        except Exception:
            pass


def _flash_full(err_text) -> bool:
    """ENOSPC as the board reports it: 'OSError: 28' (Unix port) or 'OSError: [Errno 28] ENOSPC'."""
    return bool(re.search(r"OSError: (\[Errno )?28\b|ENOSPC", err_text or ""))


def _parents(path: str):
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
