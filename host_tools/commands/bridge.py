"""`sensorpub bridge`: subscribe as a verifier identity and keep every reading in a store (SQLite or PostgreSQL)."""
import json
import signal

from ..contract import DEFAULT_PORT
from ..errors import CommandError
from .common import add_fleet, command, say

EPILOG = """A reading is acknowledged to the broker only once it is stored (and, with --handler or --webhook, handled),
so a bridge stopped at any moment, even by kill -9, loses nothing and stores nothing twice: run it again and
the broker delivers what it had not acknowledged. A failing handler is retried with back-off, never skipped.
exit status: 0 stopped (Ctrl-C, SIGTERM, --once-idle); 3 could not connect or was refused; 1 other errors
examples:
  sensorpub pki verifier --name bridge                 # once: the bridge's own identity
  sensorpub bridge                                     # into data/demo/readings.sqlite, until Ctrl-C
  sensorpub bridge --store /srv/sensors/readings.sqlite
  sensorpub bridge --store postgresql://sensorpub:PASSWORD@db.example.com/sensorpub
  sensorpub bridge --handler myhandlers:on_reading     # myhandlers.py in the current folder
  sensorpub bridge --webhook http://localhost:8080/readings
  sensorpub bridge --once-idle 10 --json               # take what is waiting, stop after 10 s of quiet"""


def argparse_bridge(sub):
    p = command(sub, "bridge", "store every reading (SQLite or PostgreSQL), optionally hand each to a handler", EPILOG)
    add_fleet(p)
    p.add_argument("--store", metavar="URL",
                   help="where to keep readings: postgresql://USER:PASSWORD@HOST[:PORT]/DB, sqlite:///PATH or a "
                        "file path (default: data/<fleet>/readings.sqlite)")
    p.add_argument("--as", dest="identity", default="bridge", metavar="NAME",
                   help="the verifier identity to connect as (default: bridge, made by 'sensorpub pki verifier "
                        "--name bridge'); its certificate CN is the client id of the persistent session")
    h = p.add_mutually_exclusive_group()
    h.add_argument("--handler", metavar="MODULE:FUNCTION",
                   help="call FUNCTION(reading) for each new reading (the device's JSON as a dict); the module "
                        "is imported from the current folder or sys.path, or given as path/file.py")
    h.add_argument("--webhook", metavar="URL",
                   help="POST each new reading as JSON to URL; any answer but 2xx is a failure")
    p.add_argument("--host", help="broker host (default: localhost)")
    p.add_argument("--port", type=int, help="broker port (default: the port the fleet's broker was last started on, "
                                            f"else {DEFAULT_PORT})")
    p.add_argument("--once-idle", type=float, metavar="SECONDS",
                   help="stop once nothing arrived for SECONDS (and nothing is in hand): drain, then exit")
    p.add_argument("--json", action="store_true", help="print the summary as JSON, and not each reading")
    p.add_argument("--quiet", action="store_true", help="do not print each reading")


def do_bridge(args):
    from .. import handlers, target
    from ..bridge import Bridge
    from ..fleet import Fleet
    from ..paths import verifier_cn
    from ..store import check_url, open_store
    from ..verify import Endpoint
    if args.once_idle is not None and not args.once_idle > 0:
        raise CommandError("--once-idle must be a number of seconds above 0")
    v = Fleet(args.fleet).verifier_identity_dir(args.identity)
    if not (v / "verifier.pem").exists():
        raise CommandError(f"no verifier identity {args.identity!r} in fleet {args.fleet!r} ({v}/verifier.pem "
                           f"missing): run 'sensorpub pki verifier --name {args.identity} --fleet {args.fleet}' first")
    handler = handlers.load(args.handler) if args.handler else handlers.webhook(args.webhook) if args.webhook else None
    t = target.resolve(args.fleet, "local", args.host, args.port)
    ep = Endpoint(t.host, t.port, t.ca_file, v / "verifier.pem", v / "verifier.key.pem",
                  client_id=verifier_cn(args.identity), clean_session=False)
    check_url(args.store)  # a bad --store is refused before anything connects

    def opened():
        store = open_store(args.store, args.fleet)
        say(f"bridge: {t.host}:{t.port} as {ep.client_id} into {store.where}"
            + (f", handler {args.handler}" if args.handler else "")
            + (f", webhook {handlers.shown(args.webhook)}" if args.webhook else "")
            + (f"; stops after {args.once_idle:g} s of quiet" if args.once_idle else "; Ctrl-C stops"))
        return store

    quiet = args.quiet or args.json
    bridge = Bridge(ep, opened, handler, on_line=(lambda _l: None) if quiet else (lambda line: print(line, flush=True)),
                    log=say)
    previous = {s: signal.signal(s, lambda *_a: bridge.stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        bridge.run(args.once_idle)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    s = bridge.summary()
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"bridge: {s['stored']} readings stored, {s['duplicates']} duplicates skipped, "
              f"{s['malformed']} malformed, {s['handled']} handled, {s['handler_retries']} handler retries, "
              f"{s['statuses']} status changes (store: {s['store']})")
    return 0
