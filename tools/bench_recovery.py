"""Backlog drain after an outage, and the heap a firmware needs: figures for `make bench` (tools/bench.py).

drain(): a virtual board publishing every second; the broker is stopped for `outage` seconds and started
again; the figure is the time from the broker's start to the board's 'queued 0' (every reading taken
during the outage acknowledged), with the TCP probe (probe_s 3, the default) and without it (probe_s 0,
the back-off window alone) in the same run.

heap_floor(): the smallest -X heapsize (2 KB steps) in which 300 readings go out with no MemoryError, for
the firmware as .py and as .mpy.
"""
import re
import time
from typing import Callable, Optional

from host_tools.flash import build_config, flash
from host_tools.vboard import VBoard


def _wait(vb: VBoard, start: int, pattern: str, timeout: float) -> Optional[re.Match]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, vb.console_log.read_bytes()[start:].decode(errors="replace"))
        if m:
            return m
        time.sleep(0.05)
    return None


def drain(broker, outage: float, probe_s: int, name: str = "rec") -> dict:
    vb = VBoard(name)
    vb.start(erase=True)
    try:
        flash(f"vboard:{name}", "demo", "dev1", "unix",
              build_config("dev1", "localhost", broker.port, 1, {"probe_s": probe_s}))
        if not _wait(vb, 0, r"published seq 2 ", 30):
            raise SystemExit("bench_recovery: the board did not publish")
        broker.stop()
        time.sleep(outage)  # the outage is the scenario: the board takes a reading a second meanwhile
        start = vb.console_log.stat().st_size
        broker.start()
        t0 = time.monotonic()
        m = _wait(vb, start, r"published seq (\d+) queued 0", outage + 120)
        if not m:
            raise SystemExit(f"bench_recovery: no 'queued 0' within {outage + 120:.0f} s of the broker's return")
        secs = time.monotonic() - t0
        sent = len(re.findall(r"published seq", vb.console_log.read_bytes()[start:].decode(errors="replace")))
        return {"outage_s": outage, "probe_s": probe_s, "drain_s": round(secs, 2), "readings_drained": sent}
    finally:
        vb.stop()


def heap_floor(broker, mpy: bool, low: int = 40, high: int = 96, name: str = "heap",
               progress: Callable[[str], None] = lambda m: None) -> int:
    """KB: the smallest heap that runs 300 readings without MemoryError (binary search in 2 KB steps)."""
    def runs(kb: int) -> bool:
        vb = VBoard(name)
        vb.start(heapsize=f"{kb}k", erase=True)
        try:
            start = vb.console_log.stat().st_size
            flash(f"vboard:{name}", "demo", "dev1", "unix",
                  build_config("dev1", "localhost", broker.port, 0, {"max_cycles": 300}), mpy=mpy)
            m = _wait(vb, start, r"done cycles=300 sent=(\d+)|MemoryError", 120)
            ok = bool(m and m.group(1) == "300")
            progress(f"heap {kb}k {'.mpy' if mpy else '.py'}: {'runs' if ok else 'fails'}")
            return ok
        except SystemExit:
            raise
        except Exception as e:  # the flash itself ran out of heap: too small
            progress(f"heap {kb}k {'.mpy' if mpy else '.py'}: fails ({type(e).__name__})")
            return False
        finally:
            vb.stop()
    lo, hi = low // 2, high // 2  # in 2 KB units: lo fails (assumed), hi runs (checked)
    if not runs(hi * 2):
        return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if runs(mid * 2):
            hi = mid
        else:
            lo = mid
    return hi * 2
