"""Fleet scale: how fast N real-firmware virtual boards are flashed, whether all they publish arrives, and what
each board costs in memory and CPU.

`python tools/bench_fleet.py --count 200 --minutes 5` (run it with `nice` on a shared machine); `run()` returns
the figures for tools/bench.py. In a fresh SENSORPUB_HOME it makes a fleet PKI and starts a broker on a free port,
subscribes a persistent verifier (QoS 1) to every device's telemetry, then does what `sensorpub fleet up` does,
timing its steps: identities, boards started, boards flashed (the figure the issue asks about). The boards then
publish every `interval` s for `minutes`; after the first reading of every board has had time to arrive, CPU
is measured over the rest of the run (each interpreter, the supervisors, Mosquitto, this process, and the
machine from /proc/stat), memory at its end (RSS and PSS from /proc/PID/smaps_rollup: PSS counts a page that
N processes share as 1/N in each, so it is what a board adds to the machine; RSS counts it in every one).

Delivered % = unique readings received / readings taken. A board's readings taken are its highest seq
received + 1 (its flash is erased, so it counts from 0), or, if more, the readings any board must have taken
since the last flash ended: a board that went silent counts against the figure.

`--legacy` starts every board the way `sensorpub vboard start` does, one supervisor and one executed
micropython each, to compare.
"""
import argparse
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLEET = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _verifier(fleet, port: int, seen: dict):
    """Persistent-session subscriber: {device: set of seqs}; reconnects on its own."""
    import paho.mqtt.client as mqtt
    from host_tools.paths import VERIFIER_CN
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=VERIFIER_CN, clean_session=False,
                    protocol=mqtt.MQTTv311)
    ctx = ssl.create_default_context(cafile=str(fleet.ca_cert))
    ctx.load_cert_chain(str(fleet.verifier_dir / "verifier.pem"), str(fleet.verifier_dir / "verifier.key.pem"))
    c.tls_set_context(ctx)
    c.reconnect_delay_set(0.1, 2)
    subscribed = threading.Event()
    lock = threading.Lock()

    def on_message(_c, _u, m):
        try:
            msg = json.loads(m.payload)
            with lock:
                seen.setdefault(msg["device_id"], set()).add(msg["seq"])
        except (ValueError, KeyError, TypeError):
            with lock:
                seen.setdefault("(malformed)", set()).add(len(seen.get("(malformed)", ())))

    c.on_connect = lambda cl, *a: cl.subscribe("devices/+/telemetry", qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = on_message
    c.connect("localhost", port, keepalive=30)
    c.loop_start()
    if not subscribed.wait(15):
        raise RuntimeError("the verifier could not subscribe")
    return c


def _machine_cpu():
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def _pss(pid):
    from host_tools.fleet_run import proc_stats
    return proc_stats(pid)


def _processes(names):
    """{"mp": [pids], "sup": [pids]} of the running boards."""
    from host_tools.vboard import VBoard
    mp, sup = [], set()
    for n in names:
        st = VBoard(n).state()
        if st:
            mp.append(st["child"])
            sup.add(st["pid"])
    return {"mp": mp, "sup": sorted(sup)}


def _copy(seen: dict) -> dict:
    while True:  # the verifier's thread adds to the sets meanwhile
        try:
            return {n: set(v) for n, v in list(seen.items())}
        except RuntimeError:
            time.sleep(0.01)


def _returning(b, names, seen: dict, before: dict, outage: float, interval: int, progress) -> dict:
    """Stop the broker for `outage` s and start it again: how the fleet comes back. From the broker's log, the
    CONNECTs it accepted per second (the thundering herd, or not) and when the last board was back; from the
    verifier, when every board's readings from the outage had arrived (each board's seq past what it had sent
    before the outage plus the readings it took meanwhile)."""
    import re
    log = b.log_file
    b.stop()
    time.sleep(outage)  # the outage is the scenario
    back = time.time()
    b.start()  # a new log (the old one goes to .1)
    want = {n: max(before.get(n, {-1})) + int(outage // interval) for n in names}
    deadline = time.monotonic() + outage + 180
    drained = None
    while time.monotonic() < deadline:
        try:  # the verifier's thread adds to the sets meanwhile
            done = all(max(seen.get(n, {-1})) >= want[n] for n in names)
        except RuntimeError:
            continue
        if done:
            drained = time.time() - back
            break
        time.sleep(0.5)
    text = log.read_bytes().decode(errors="replace")
    stamps = {}
    for t, name in re.findall(r"^(\S+): New client connected from \S+ as (\S+) ", text, re.M):
        if name in want:
            stamps.setdefault(name, time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%S")))
    per_s: dict = {}
    for t in stamps.values():
        per_s[int(t)] = per_s.get(int(t), 0) + 1
    first = min(stamps.values(), default=back)
    last = max(stamps.values(), default=back)
    progress(f"after a {outage:g} s outage: {len(stamps)} of {len(names)} boards back within {last - int(back):.0f} s, "
             f"at most {max(per_s.values(), default=0)} CONNECTs in one second")
    return {"outage_s": outage, "boards_back": len(stamps), "first_back_s": round(first - int(back)),
            "all_back_s": round(last - int(back)), "max_connects_per_s": max(per_s.values(), default=0),
            "mean_connects_per_s": round(len(stamps) / max(1, last - first + 1), 1),
            "backlog_drained_s": round(drained, 1) if drained is not None else None}


def run(count: int = 200, minutes: float = 5.0, interval: int = 30, workers: int = 0, legacy: bool = False,
        outage: float = 0, progress=lambda m: print(m, file=sys.stderr, flush=True)) -> dict:
    from host_tools import broker as broker_mod, fleet_run, pki
    from host_tools.batch import issue_devices, numbered
    from host_tools.fleet_run import cpu_seconds
    from host_tools.vboard import DEFAULT_HEAP, VBoard
    workers = workers or fleet_run.WORKERS
    home = Path(tempfile.mkdtemp(prefix="sensorpub-bench-fleet-"))
    os.chmod(home, 0o711)
    old_home = os.environ.get("SENSORPUB_HOME")
    os.environ["SENSORPUB_HOME"] = str(home)
    names = numbered(count, "dev")
    b = None
    try:
        pki.init_ca(FLEET)
        pki.issue_server(FLEET, [], [])
        pki.issue_verifier(FLEET)
        b = broker_mod.Broker(FLEET, port=_free_port())
        b.start()
        seen: dict = {}
        sub = _verifier(pki.Fleet(FLEET), b.port, seen)
        t0 = time.monotonic()
        issue_devices(FLEET, names)
        t1 = time.monotonic()
        if legacy:
            for n in names:
                VBoard(n).start(DEFAULT_HEAP, fleet_run.FLEET_FLASH_KB, erase=True)
        else:
            fleet_run.start_boards(FLEET, names)
        t2 = time.monotonic()
        progress(f"{count} boards started in {t2 - t1:.1f} s; flashing, {workers} at a time")
        results = fleet_run.flash_boards(FLEET, names, interval, b.port, workers)
        t3 = time.monotonic()
        failed = [r for r in results if r.error]
        progress(f"flashed {count - len(failed)} in {t3 - t2:.1f} s ({len(failed)} failed"
                 f"{': ' + failed[0].error if failed else ''}); running {minutes} min")
        settle = min(interval + 15, minutes * 60 / 2)  # every board's boot, handshake and first reading
        time.sleep(settle)
        procs = _processes(names)
        mine = os.getpid()
        watched = procs["mp"] + procs["sup"] + [b.pid(), mine]
        c0 = {p: cpu_seconds(p) for p in watched}
        m0, w0 = _machine_cpu(), time.monotonic()
        time.sleep(max(0.0, minutes * 60 - settle))
        c1 = {p: cpu_seconds(p) for p in watched}
        m1, w1 = _machine_cpu(), time.monotonic()
        mem = {p: _pss(p) for p in procs["mp"] + procs["sup"]}
        time.sleep(5)  # the readings in flight at the end arrive
        t_end = w1
        seen_then = _copy(seen)
        returning = _returning(b, names, seen, seen_then, outage, interval, progress) if outage else None
        sub.disconnect()
        sub.loop_stop()
        seen = seen_then

        def cpu_pct(pids):
            used = [c1[p] - c0[p] for p in pids if c0.get(p) is not None and c1.get(p) is not None]
            return 100 * sum(used) / (w1 - w0)

        must = int((t_end - t3) // interval)  # readings every board has taken since the last flash ended
        taken = received = silent = gaps = 0
        for n in names:
            seqs = seen.get(n, set())
            took = max(max(seqs) + 1 if seqs else 0, must)
            taken += took
            received += len(seqs)
            silent += not seqs
            gaps += (max(seqs) + 1 - len(seqs)) if seqs else 0
        running = len(procs["mp"])
        mp_pss = sum(mem[p]["pss_kb"] or 0 for p in procs["mp"])
        sup_pss = sum(mem[p]["pss_kb"] or 0 for p in procs["sup"])
        cores = os.cpu_count() or 1
        return {
            "mode": "legacy" if legacy else "fleet", "boards": count, "running": running, "interval_s": interval,
            "minutes": minutes, "workers": workers, "identities_s": round(t1 - t0, 1),
            "start_s": round(t2 - t1, 1), "flash_s": round(t3 - t2, 1), "flash_failed": len(failed),
            "readings_taken": taken, "readings_received": received, "gaps": gaps, "silent_boards": silent,
            "delivered_pct": round(100 * received / taken, 2) if taken else 0.0,
            "pss_mb_per_board": round((mp_pss + sup_pss) / 1024 / max(1, running), 2),
            "rss_mb_per_board": round(sum(mem[p]["rss_kb"] or 0 for p in procs["mp"] + procs["sup"]) / 1024
                                      / max(1, running), 2),  # shared pages counted in every process
            "interpreter_pss_mb": round(mp_pss / 1024 / max(1, running), 2),
            "interpreter_rss_mb": round(sum(mem[p]["rss_kb"] or 0 for p in procs["mp"]) / 1024 / max(1, running), 2),
            "supervisors": len(procs["sup"]), "supervisor_pss_mb_total": round(sup_pss / 1024, 1),
            "cpu_pct_per_board": round((cpu_pct(procs["mp"]) + cpu_pct(procs["sup"])) / max(1, running), 4),
            "interpreter_cpu_pct_per_board": round(cpu_pct(procs["mp"]) / max(1, running), 4),
            "supervisors_cpu_pct": round(cpu_pct(procs["sup"]), 2),
            "broker_cpu_pct": round(cpu_pct([b.pid()]), 2),
            "verifier_cpu_pct": round(cpu_pct([mine]), 2),
            "machine_cpu_pct": round(100 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]), 1),
            "cores": cores,
            "returning": returning,
        }
    finally:
        try:
            if legacy:
                for n in names:
                    VBoard(n).stop()
            else:
                fleet_run.down(FLEET)
        finally:
            if b is not None:
                b.stop()
            if old_home is None:
                os.environ.pop("SENSORPUB_HOME", None)
            else:
                os.environ["SENSORPUB_HOME"] = old_home
            shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="virtual board fleet: flash time, delivery, memory and CPU per board")
    ap.add_argument("--count", type=int, default=200, help="boards (default: 200)")
    ap.add_argument("--minutes", type=float, default=5, help="how long they publish (default: 5)")
    ap.add_argument("--interval", type=int, default=30, help="seconds between readings (default: 30)")
    ap.add_argument("--workers", type=int, default=0, help="flashes at a time (default: fleet_run.WORKERS)")
    ap.add_argument("--legacy", action="store_true", help="one supervisor and one executed micropython per board")
    ap.add_argument("--outage", type=float, default=0,
                    help="then stop the broker this many seconds and measure the CONNECT rate as the boards return")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    r = run(a.count, a.minutes, a.interval, a.workers, a.legacy, a.outage)
    if a.json:
        print(json.dumps(r, indent=1))
        return
    print(f"{r['mode']}: {r['running']}/{r['boards']} boards, {r['workers']} flashing at a time: flashed in "
          f"{r['flash_s']} s ({r['flash_failed']} failed), started in {r['start_s']} s")
    print(f"delivered {r['delivered_pct']} % ({r['readings_received']} of {r['readings_taken']} readings over "
          f"{r['minutes']} min at {r['interval_s']} s; {r['gaps']} gaps, {r['silent_boards']} silent boards)")
    print(f"per board: {r['pss_mb_per_board']} MB PSS, {r['rss_mb_per_board']} MB RSS (interpreter {r['interpreter_pss_mb']} MB, RSS "
          f"{r['interpreter_rss_mb']} MB; {r['supervisors']} supervisors {r['supervisor_pss_mb_total']} MB in all), "
          f"CPU {r['cpu_pct_per_board']} % of a core (interpreter {r['interpreter_cpu_pct_per_board']} %)")
    print(f"machine CPU {r['machine_cpu_pct']} % of {r['cores']} cores; supervisors {r['supervisors_cpu_pct']} %, "
          f"broker {r['broker_cpu_pct']} %, verifier {r['verifier_cpu_pct']} % (of one core)")


if __name__ == "__main__":
    main()
