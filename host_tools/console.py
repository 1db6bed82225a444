"""`sensorpub console`: a board's console. A virtual board's output is read from its console.log;
a real board's from its serial port (pyserial, 115200 8N1)."""
import sys
import time
from typing import Optional

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


def follow(port: str, lines: int = 20, seconds: Optional[float] = None, out=sys.stdout) -> None:
    vb = _vboard_for(port)
    end = time.monotonic() + seconds if seconds else None
    if vb is not None:
        if not vb.console_log.exists():
            raise CommandError(f"virtual board {vb.name!r} has no console yet: 'sensorpub vboard start'")
        with open(vb.console_log, "r", errors="replace", newline="") as f:
            for ln in f.readlines()[-lines:] if lines > 0 else []:
                out.write(ln.replace("\r", ""))
            out.flush()
            while end is None or time.monotonic() < end:
                ln = f.readline()
                if ln:
                    out.write(ln.replace("\r", ""))
                    out.flush()
                else:
                    time.sleep(0.1)
        return
    import serial
    try:
        s = serial.Serial(port, 115200, timeout=0.2)
    except (serial.SerialException, OSError) as e:
        raise CommandError(f"cannot open {port}: {e} (is mpremote or another console using it?)") from None
    with s:
        while end is None or time.monotonic() < end:
            b = s.read(256)
            if b:
                out.write(b.decode("utf-8", "replace").replace("\r", ""))
                out.flush()
