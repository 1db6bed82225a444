"""`sensorpub report`: one self-contained HTML file of the readings in the bridge's store."""
import json
import sys
from pathlib import Path

from ..errors import CommandError
from .common import add_fleet, command, say

EPILOG = """The file opens offline in any browser: no scripts, fonts or style sheets from the network; the charts are
PNG images (drawn by matplotlib) inside it. At the top, the fleet summary of 'sensorpub status'; then per device:
sensor values over time with missing seq ranges shaded, the latency histogram (received - ts), gaps and
duplicates (the store keeps one copy of each reading), health trends (heap_free, rssi, reconnects, queued,
cert_days) when the device sends them.
examples:
  sensorpub report --html report.html
  sensorpub report --html dev1.html --device dev1
  sensorpub report --html site.html --device dev1 dev2 --fleet site1
  sensorpub report --html report.html --store postgresql://sensorpub:PASSWORD@db.example.com/sensorpub"""


def argparse_report(sub):
    p = command(sub, "report", "one self-contained HTML report of the stored readings, with charts", EPILOG)
    add_fleet(p)
    p.add_argument("--html", required=True, metavar="FILE", help="write the report to FILE (replaced if it exists)")
    p.add_argument("--store", metavar="URL",
                   help="read this store: postgresql://USER:PASSWORD@HOST[:PORT]/DB, sqlite:///PATH or a file path "
                        "(default: data/<fleet>/readings.sqlite, written by 'sensorpub bridge')")
    p.add_argument("--device", nargs="+", action="extend", metavar="NAME",
                   help="only these devices (the fleet summary still shows every device)")
    p.add_argument("--json", action="store_true", help="print {path, bytes, devices} as JSON instead of a line")


def do_report(args):
    from .. import report
    from ..fleet_status import existing_store
    from ..store import store_path
    report.check_target(args.html)
    store = existing_store(args.store, args.fleet)
    if store is None:
        raise CommandError(f"fleet {args.fleet!r} has no store ({store_path(args.fleet)} does not exist): run "
                           f"'sensorpub bridge --fleet {args.fleet}' first, or give --store URL")
    bar, drawn = None, []

    def done(device):
        drawn.append(device)
        if bar is not None:
            bar.update()

    try:
        say(f"report: from the store {store.where}")
        count = len(set(args.device)) if args.device else len(store.devices())
        if count > 1:
            from tqdm import tqdm
            bar = tqdm(total=count, unit="device", desc="report", file=sys.stderr, dynamic_ncols=True)
        text = report.build(store, args.fleet, args.device, done=done)
    finally:
        if bar is not None:
            bar.close()
        store.close()
    n = report.write(args.html, text)
    path = Path(args.html).resolve()
    if args.json:
        print(json.dumps({"path": str(path), "bytes": n, "devices": len(drawn)}))
    else:
        print(f"wrote {path} ({report.size(n)}, {len(drawn)} device{'s' if len(drawn) != 1 else ''})")
    return 0
