"""`sensorpub fleet`: many virtual boards publishing to the fleet's broker, for load tests (host_tools/fleet_run.py)."""
import json
import sys

from ..errors import CommandError
from .common import actions, add_fleet, command

EPILOG = """examples:
  sensorpub broker start                          # the fleet's broker first
  sensorpub fleet up --count 200                  # dev001..dev200: identities, boards, firmware (30 s interval)
  sensorpub fleet up --count 20 --interval 2 --prefix load   # load001..load020, a reading every 2 s
  sensorpub fleet status                          # each board: running, pid, RSS, PSS, CPU %
  sensorpub fleet status --json
  sensorpub verify --timeout 120                  # what the fleet delivers, device by device
  sensorpub console --port vboard:dev007 -f       # one board's console
  sensorpub fleet down"""

ACTIONS = (("up", "make identities, start N virtual boards and flash them in parallel (the broker must run)"),
           ("status", "the fleet's virtual boards: running or not, pid, RSS, PSS, CPU use"),
           ("down", "stop every virtual board of the fleet (their flash images stay)"))


def argparse_fleet(sub):
    from ..fleet_run import FLEET_FLASH_KB, FLEET_HEAP, WORKERS
    p = command(sub, "fleet", "many virtual boards publishing to the fleet's broker (load tests)", EPILOG)
    for name, a in actions(p, ACTIONS).items():
        add_fleet(a)
        if name == "up":
            a.add_argument("--count", type=int, required=True, help="how many boards (and device identities)")
            a.add_argument("--prefix", default="dev", help="device and board names: PREFIX001... (default: dev)")
            a.add_argument("--start", type=int, default=1, help="first number (default: 1)")
            a.add_argument("--interval", type=int, default=30, help="seconds between readings (default: 30)")
            a.add_argument("--workers", type=int, default=WORKERS,
                           help=f"boards flashed at a time (default: {WORKERS}, the fastest measured on 2 cores)")
            a.add_argument("--heapsize", default=FLEET_HEAP, help=f"MicroPython heap per board (default: "
                                                                 f"{FLEET_HEAP})")
            a.add_argument("--flash-kb", type=int, default=FLEET_FLASH_KB,
                           help=f"LittleFS flash per board in KB (default: {FLEET_FLASH_KB})")
        if name == "status":
            a.add_argument("--json", action="store_true", help="print JSON (boards, supervisors, running)")


def do_fleet(args):
    from .. import fleet_run
    if args.action == "up":
        return _up(args)
    if args.action == "down":
        n = fleet_run.down(args.fleet)
        print(f"stopped {n} virtual boards of fleet {args.fleet!r}" if n else
              f"fleet {args.fleet!r} had no virtual boards running")
        return 0
    st = fleet_run.status(args.fleet)
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        _table(st)
    return 0 if st["running"] else 3


def _up(args) -> int:
    from tqdm import tqdm
    from .. import fleet_run
    bar = tqdm(total=args.count, unit="board", desc="fleet up", file=sys.stderr, dynamic_ncols=True)

    def note(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    def done(r) -> None:
        if r.error:
            note(f"{r.name}: {r.error}")
        bar.update()

    def flashing(n: int) -> None:
        bar.total = n  # the boards already up are not flashed again
        bar.refresh()

    try:
        res = fleet_run.up(args.fleet, args.count, args.prefix, args.interval, args.start, args.workers,
                           args.heapsize, args.flash_kb, progress=note, done=done, flashing=flashing)
    except KeyboardInterrupt:
        raise CommandError("interrupted: 'sensorpub fleet status' shows what is up, 'sensorpub fleet down' stops "
                           "it", 130) from None
    finally:
        bar.close()
    up = res["boards"] - len(res["failed"])
    print(f"{up} of {res['boards']} boards up for fleet {args.fleet!r} (broker port {res['port']}, "
          f"{res['flashed']} flashed now) in {res['seconds']} s")
    if res["failed"]:
        first = res["failed"][0]
        raise CommandError(f"{len(res['failed'])} boards failed to flash, e.g. {first.name}: {first.error}")
    return 0


def _table(st: dict) -> None:
    def mb(kb):
        return "-" if kb is None else f"{kb / 1024:.1f}"

    def pct(v):
        return "-" if v is None else f"{v:.2f}"

    if not st["boards"]:
        print(f"fleet {st['fleet']!r} has no virtual boards: 'sensorpub fleet up --count N'")
        return
    print(f"{'board':<12} {'state':<8} {'pid':>7} {'RSS MB':>7} {'PSS MB':>7} {'CPU %':>6}")
    for r in st["boards"]:
        print(f"{r['name']:<12} {'running' if r['running'] else 'stopped':<8} {r.get('pid') or '-':>7} "
              f"{mb(r.get('rss_kb')):>7} {mb(r.get('pss_kb')):>7} {pct(r.get('cpu_pct')):>6}")
    for s in st["supervisors"]:
        print(f"supervisor {s['group']} ({s['boards']} boards): pid {s['pid']}, RSS {mb(s['rss_kb'])} MB, "
              f"PSS {mb(s['pss_kb'])} MB, CPU {pct(s['cpu_pct'])} %")
    pss = [r["pss_kb"] for r in st["boards"] if r.get("pss_kb") is not None] + \
        [s["pss_kb"] for s in st["supervisors"] if s.get("pss_kb") is not None]
    per = f"; {sum(pss) / max(1, st['running']) / 1024:.1f} MB PSS per board, supervisors included" if pss else ""
    print(f"{st['running']} of {len(st['boards'])} boards running{per} (CPU % over each process's life, as ps)")
