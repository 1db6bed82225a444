"""`sensorpub status`: the fleet at a glance, from the bridge's store or a short subscription."""
import json

from ..errors import CommandError
from .common import add_fleet, add_verifier_connection, command, say, verifier_endpoint

EPILOG = """Source: the store when there is one (--store, or data/<fleet>/readings.sqlite once 'sensorpub bridge' ran);
otherwise the broker's retained status of every device plus the telemetry heard within --wait seconds.
stderr says which. Devices with an identity in certs/<fleet>/devices that were never heard from are listed
as 'never' seen. Flags: state offline; cert_d with '!' when the certificate has 30 days or fewer left.
columns: seen = since the last reading or status change (12s, 3m, 2h, 5d); seq = last seq; gaps = seqs missing
  between the first and last stored; lat_s = median of received - ts; cert_d, rssi, reconn = newest values
exit status: 0 the table was printed (whatever the devices' state); 3 no store and the broker could not be
  reached or refused the verifier; 1 other errors
examples:
  sensorpub status
  sensorpub status --json | jq '.[] | select(.state == "offline") | .device'
  sensorpub status --store /srv/sensors/readings.sqlite
  sensorpub status --store postgresql://sensorpub:PASSWORD@db.example.com/sensorpub
  sensorpub status --wait 10                  # no store: listen 10 s for retained statuses and readings
  sensorpub status --as status --port 18883   # its own verifier identity ('pki verifier --name status')"""


def argparse_status(sub):
    from ..fleet_status import DEFAULT_WAIT_S
    p = command(sub, "status", "the fleet at a glance: online/offline, last seen, gaps, latency, certificate days",
                EPILOG)
    add_fleet(p)
    p.add_argument("--store", metavar="URL",
                   help="read this store: postgresql://USER:PASSWORD@HOST[:PORT]/DB, sqlite:///PATH or a file path "
                        "(default: data/<fleet>/readings.sqlite when it exists, else ask the broker)")
    p.add_argument("--json", action="store_true", help="print every row with all its fields as JSON")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                   help=f"no store: seconds to listen for retained statuses and telemetry (default: {DEFAULT_WAIT_S:g})")
    add_verifier_connection(p, "no store: ")


def do_status(args):
    import time
    from .. import fleet_status
    if not args.wait > 0:
        raise CommandError("--wait must be a number of seconds above 0")
    known = fleet_status.known_devices(args.fleet)
    store = fleet_status.existing_store(args.store, args.fleet)
    if store is not None:
        try:
            say(f"status: from the store {store.where}")
            rows = fleet_status.from_store(store, known, time.time())
        finally:
            store.close()
    else:
        rows = _from_broker(args, known)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(fleet_status.table(rows))
        for line in fleet_status.notes(rows):
            print(line)
    return 0


def _from_broker(args, known):
    import time
    from .. import fleet_status
    from ..store import store_path
    ep, t = verifier_endpoint(args)
    say(f"status: no store ({store_path(args.fleet)} does not exist): asking the broker at {t.host}:{t.port}")
    messages = fleet_status.listen(ep, args.wait, on_ready=lambda: say(
        f"status: subscribed; listening {args.wait:g} s for retained statuses and telemetry"))
    return fleet_status.from_messages(messages, known, time.time())
