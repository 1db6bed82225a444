"""`sensorpub console`: a board's console. A virtual board's output is read from its console.log;
a real board's from its serial port (pyserial, 115200 8N1).

mpremote talks to a board through its raw REPL (Ctrl-A, code, Ctrl-D, replies framed by Ctrl-D): on the
console that is noise. RawReplFilter hides each such session behind one line; `--raw` shows every byte.
"""
import re
import sys
import time
from typing import Iterator, Optional

from .errors import CommandError


def _vboard_for(port: str):
    from .vboard import VBoard
    if port == "vboard" or port.startswith("vboard:"):
        return VBoard(port.partition(":")[2] or "vb0")
    from .paths import home
    for st in (home() / "run").glob("vboard-*/state.json"):
        vb = VBoard(st.parent.name[len("vboard-"):])
        s = vb.state()
        if s and port in (s["pty"], s["link"]):
            return vb
    return None


RAW_ENTER = "raw REPL; CTRL-B to exit"
# lines that mean the board's own program speaks again: a firmware log line, a boot or reset banner
_BACK = re.compile(r"^(\[\s*\d+\.\d+\] [A-Z]+ |vboard: |MicroPython v|MPY: soft reboot|rst:0x|ets |>>> )")
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f]")  # what a terminal would act on, except tab and newline


class RawReplFilter:
    """Line by line: hides what mpremote's raw REPL exchanges, shows one marker line per session."""

    def __init__(self):
        self.raw = False

    def lines(self, line: str) -> Iterator[str]:
        if RAW_ENTER in line:
            if not self.raw:
                yield "-- mpremote connected: its raw REPL traffic is hidden (--raw shows it) --\n"
            self.raw = True
            return
        text = _CTRL.sub("", line.rsplit("\x04", 1)[-1])  # after mpremote's last Ctrl-D: the board's own
        if self.raw and not _BACK.match(text):
            return
        self.raw = False
        yield text if text.endswith("\n") or not text else text + "\n"


def _shown(lines, raw: bool) -> Iterator[str]:
    if raw:
        yield from (ln.replace("\r", "") for ln in lines)
        return
    f = RawReplFilter()
    for ln in lines:
        yield from f.lines(ln)


def follow(port: str, lines: int = 20, seconds: Optional[float] = None, out=sys.stdout, raw: bool = False) -> None:
    vb = _vboard_for(port)
    end = time.monotonic() + seconds if seconds else None
    if vb is not None:
        if not vb.console_log.exists():
            raise CommandError(f"virtual board {vb.name!r} has no console yet: 'sensorpub vboard start'")
        with open(vb.console_log, "r", errors="replace", newline="") as f:
            past = list(_shown(f.readlines(), raw))  # the whole log: the filter must know if it starts in raw mode
            out.writelines(past[-lines:] if lines > 0 else [])
            out.flush()
            new = _shown(_tail_lines(f, end), raw)
            for ln in new:
                out.write(ln)
                out.flush()
        return
    import serial
    try:
        s = serial.Serial(port, 115200, timeout=0.2)
    except (serial.SerialException, OSError) as e:
        raise CommandError(f"cannot open {port}: {e} (is mpremote or another console using it?)") from None
    with s:
        for ln in _shown(_serial_lines(s, end), raw):
            out.write(ln)
            out.flush()


def _tail_lines(f, end: Optional[float]) -> Iterator[str]:
    while end is None or time.monotonic() < end:
        ln = f.readline()
        if ln:
            yield ln
        else:
            time.sleep(0.1)


def _serial_lines(s, end: Optional[float]) -> Iterator[str]:
    """Whole lines from the port; a partial one (a prompt) once the board pauses."""
    buf = ""
    while end is None or time.monotonic() < end:
        b = s.read(256)
        buf += b.decode("utf-8", "replace")
        *done, buf = buf.split("\n")
        yield from (ln + "\n" for ln in done)
        if buf and not b:
            yield buf
            buf = ""
