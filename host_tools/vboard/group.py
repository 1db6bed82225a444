"""Many virtual boards in one supervisor process, for fleets: one CPython for them all instead of one each.

argv: SPEC, a JSON file {"group": ID, "micropython": PATH, "host_waits": BOOL,
"boards": [{"dir", "heapsize", "blocks"}, ...]}.
Each board behaves as a lone `sensorpub vboard` one (supervisor.Board: its own pty, console.log,
state.json, resets, Ctrl-C, power cuts); its state.json also names the group. What differs:

- The interpreters are forked from this process (supervisor.spawner, as for a lone board), and after
  loading everything this process freezes its heap, so ~4 MB per board stay shared with the children.
- Host files (power.cut, wdt.expired, stop.request) are looked at once a second, and at once on SIGUSR1
  (`VBoard.power_cut` and `VBoard.stop` send it), not ten times a second per board.
- With "host_waits", the firmware's sleeps and its waits on the TLS socket are host sleeps (runtime.py,
  vbtime.py, vbselect.py): an idle board wakes when it has something to do, not every millisecond.
- SIGTERM stops the group: every interpreter is killed first, then all are reaped.
"""
import gc
import json
import selectors
import signal
import sys
from pathlib import Path

from .supervisor import Board, serve, spawner

SCAN_S = 1.0
STOP_REQUEST = "stop.request"  # VBoard.stop writes it for one board of a group


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
