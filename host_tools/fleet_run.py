"""A fleet of virtual boards for load tests: `sensorpub fleet up / status / down`.

`up` makes the device identities that are missing (batch.issue_devices), starts unix virtual boards in
groups of GROUP_SIZE per supervisor process (vboard.start_group: one CPython per group, each interpreter
forked from it), and flashes them in parallel (flash.flash on a pool of threads, WORKERS at a time). The
boards are named after their devices, so every single-board tool works on one of them
(`sensorpub console --port vboard:dev001`). run/fleet-<fleet>/boards.json lists the running fleet's
boards and their groups; `down` stops every group (signal all, then wait for all) and empties it.
"""
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .errors import CommandError
from .paths import run_dir
from .vboard import VBoard, group_pid, start_group, stop_groups

WORKERS = 12          # flashes at a time: 200 boards took 51 s with 1, 23 s with 4, 16 s with 8-24 (2 cores)
GROUP_SIZE = 100      # boards per supervisor process
FLEET_HEAP = "128k"  # a lone board's 100k, plus room for the host waits (vboard/runtime.py) and to spare
FLEET_FLASH_KB = 512  # LittleFS per fleet board: firmware, credentials and a full outbox fit many times
FLASH_TIMEOUT = 120.0  # one board's flash; a board that stops answering is given up, not waited on forever


@dataclass
class Result:
    name: str
    error: Optional[str] = None  # None: flashed and reset


def _manifest(fleet: str) -> Path:
    return run_dir("fleet-" + fleet) / "boards.json"


def members(fleet: str) -> Dict[str, str]:
    """The fleet's virtual boards: {board name: its supervisor group}."""
    try:
        return json.loads(_manifest(fleet).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _save(fleet: str, boards: Dict[str, str]) -> None:
    tmp = _manifest(fleet).with_suffix(".tmp")
    tmp.write_text(json.dumps(boards, indent=0, sort_keys=True))
    tmp.replace(_manifest(fleet))


def broker_port(fleet: str) -> int:
    """The fleet's running broker's port, or one line saying to start it."""
    from .broker import Broker
    from .target import remembered_port
    port = remembered_port(fleet)
    if not Broker(fleet).pid() or not port:
        raise CommandError(f"the broker of fleet {fleet!r} is not running: start it first with "
                           f"'sensorpub broker start --fleet {fleet}'")
    return port


def start_boards(fleet: str, names: List[str], heapsize: str = FLEET_HEAP, flash_kb: int = FLEET_FLASH_KB,
                 group_size: int = GROUP_SIZE, started: Callable[[int], None] = lambda n: None) -> List[str]:
    """Start the boards of `names` that are not running, GROUP_SIZE to a supervisor; returns those started.
    A running board that is not the fleet's is refused: it belongs to someone else."""
    mine = members(fleet)
    todo = []
    for n in names:
        if VBoard(n).state() is None:
            todo.append(n)
        elif n not in mine:
            raise CommandError(f"virtual board {n!r} is already running outside fleet {fleet!r}: stop it "
                               f"('sensorpub vboard stop --name {n}') or choose another --prefix")
    for i in range(0, len(todo), group_size):
        part = todo[i:i + group_size]
        group = base = f"{fleet}-{part[0]}"
        k = 1
        while group_pid(group):  # that name's group still runs (its first board was stopped on its own)
            k += 1
            group = f"{base}-{k}"
        start_group(group, [VBoard(n) for n in part], heapsize, flash_kb, erase=True)
        mine.update({n: group for n in part})
        _save(fleet, mine)
        started(len(part))
    return todo


def flash_boards(fleet: str, names: List[str], interval: int, port: int, workers: int = WORKERS,
                 done: Callable[[Result], None] = lambda r: None) -> List[Result]:
    """Flash each board (its own device) for the fleet's local broker, `workers` at a time, and reset it."""
    from .flash import build_config, flash
    if not names:
        return []
    base = build_config(names[0], "localhost", port, interval)  # checked once; only device_id differs
    jobs: "queue.Queue[str]" = queue.Queue()
    for n in names:
        jobs.put(n)
    results: "queue.Queue[Result]" = queue.Queue()
    started: Dict[str, float] = {}

    def worker() -> None:
        while True:
            try:
                n = jobs.get_nowait()
            except queue.Empty:
                return
            started[n] = time.monotonic()
            try:
                flash("vboard:" + n, fleet, n, "unix", dict(base, device_id=n))
                results.put(Result(n))
            except CommandError as e:
                results.put(Result(n, str(e)))
            except Exception as e:  # one board's bug is that board's failure, not the fleet's
                results.put(Result(n, f"{type(e).__name__}: {e}"))

    # daemon threads: a board that stops answering mid-transfer (mpremote can wait forever) cannot hold the
    # command; it is reported and left behind
    for _ in range(max(1, min(workers, len(names)))):
        threading.Thread(target=worker, daemon=True).start()
    out: Dict[str, Result] = {}
    while len(out) < len(names):
        try:
            got = [results.get(timeout=1.0)]
        except queue.Empty:
            now = time.monotonic()
            got = [Result(n, f"the board gave no answer within {FLASH_TIMEOUT:.0f} s")
                   for n, t in list(started.items()) if now - t > FLASH_TIMEOUT and n not in out]
        for r in got:
            if r.name not in out:  # a board given up on that answers late is not counted twice
                out[r.name] = r
                done(r)
    return [out[n] for n in names]


def up(fleet: str, count: int, prefix: str = "dev", interval: int = 30, start: int = 1,
       workers: int = WORKERS, heapsize: str = FLEET_HEAP, flash_kb: int = FLEET_FLASH_KB,
       progress: Callable[[str], None] = lambda m: None, done: Callable[[Result], None] = lambda r: None,
       flashing: Callable[[int], None] = lambda n: None) -> dict:
    """Identities, boards and firmware for PREFIX001..: the broker must run. Boards already up are left as they
    are. `flashing(n)` hears how many boards will be flashed, `done` of each once it is.
    Returns {"boards", "started", "flashed", "failed": [Result], "seconds", "port"}."""
    from .batch import issue_devices, numbered
    t0 = time.monotonic()
    port = broker_port(fleet)
    names = numbered(count, prefix, start)
    made = sum(o.status == "created" for o in issue_devices(fleet, names, progress=progress))
    if made:
        progress(f"made {made} device identities")
    todo = start_boards(fleet, names, heapsize, flash_kb)
    if len(todo) < len(names):
        progress(f"{len(names) - len(todo)} boards already up: left as they are")
    flashing(len(todo))
    results = flash_boards(fleet, todo, interval, port, workers, done)
    failed = [r for r in results if r.error]
    return {"boards": len(names), "started": len(todo), "flashed": len(results) - len(failed), "failed": failed,
            "seconds": round(time.monotonic() - t0, 1), "port": port}


def down(fleet: str) -> int:
    """Stop every board of the fleet: all groups signalled at once, then waited for. Returns boards stopped."""
    boards = members(fleet)
    running = sum(VBoard(n).state() is not None for n in boards)
    pids = [p for p in (group_pid(g) for g in set(boards.values())) if p]
    stop_groups(pids)
    for n in boards:  # a board stopped on its own ('vboard stop') is already gone; any other is stopped here
        VBoard(n).stop()
    _save(fleet, {})
    return running


def status(fleet: str) -> dict:
    """Every board of the fleet: running or not, its interpreter's pid, RSS, PSS and CPU %; and each group
    supervisor's. CPU % is averaged over the process's life, as ps shows it."""
    boards = members(fleet)
    rows, groups = [], {}
    for n, g in sorted(boards.items()):
        st = VBoard(n).state()
        row = {"name": n, "running": bool(st), "group": g}
        if st:
            row.update(proc_stats(st.get("child")), supervisor=st["pid"])
            groups.setdefault(g, st["pid"])
        rows.append(row)
    sups = [dict(proc_stats(pid), group=g, boards=sum(1 for b in boards.values() if b == g))
            for g, pid in sorted(groups.items())]
    return {"fleet": fleet, "boards": rows, "supervisors": sups,
            "running": sum(r["running"] for r in rows)}


def proc_stats(pid: Optional[int]) -> dict:
    """{pid, rss_kb, pss_kb, cpu_pct} of a process from /proc; the figures None when it is gone (or no /proc)."""
    out = {"pid": pid, "rss_kb": None, "pss_kb": None, "cpu_pct": None}
    if not pid:
        return out
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                key, _, val = ln.partition(":")
                if key in ("Rss", "Pss"):
                    out[key.lower() + "_kb"] = int(val.split()[0])
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        hz = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / hz  # utime + stime
        age = uptime - int(fields[19]) / hz              # since it started
        out["cpu_pct"] = round(100 * cpu / age, 2) if age > 0 else 0.0
    except (OSError, ValueError, IndexError):
        pass
    return out


def cpu_seconds(pid: int) -> Optional[float]:
    """CPU time a process has used so far (user + system), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
