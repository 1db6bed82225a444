"""`sensorpub verify`: subscribe as a verifier identity and check that every reading arrives."""
import json
import os

from ..contract import DEFAULT_PORT
from ..errors import CommandError
from .common import add_aws_flags, add_fleet, aws_account, command, say

EPILOG = """exit status: 0 every expected reading arrived valid, no gap; 3 could not connect or was refused;
  4 timed out before --count readings (or none at all); 5 gaps in seq; 6 malformed payloads
examples:
  sensorpub verify --device dev1 --count 3 --timeout 60
  sensorpub verify --timeout 120 --json
  sensorpub verify --target aws --region eu-west-1 --device dev1 --count 2 --timeout 120
  sensorpub verify --target aws --alpn --device dev1 --count 2   # port 443, ALPN x-amzn-mqtt-ca"""


def argparse_verify(sub):
    p = command(sub, "verify", "subscribe as the verifier and check every reading arrives", EPILOG)
    add_fleet(p)
    p.add_argument("--target", choices=("local", "aws"), default="local",
                   help="local Mosquitto (default) or AWS IoT Core")
    p.add_argument("--host", help="broker host (default: localhost; with --target aws the account's ATS endpoint)")
    p.add_argument("--port", type=int, help="broker port (default: the port the fleet's broker was last started on, "
                                            f"else {DEFAULT_PORT}; with --target aws {DEFAULT_PORT}, or 443 with --alpn)")
    p.add_argument("--alpn", action="store_true", help="AWS: connect on 443 with ALPN x-amzn-mqtt-ca")
    add_aws_flags(p, root_ca=True)
    p.add_argument("--device", help="wait for readings from this device")
    p.add_argument("--count", type=int, default=0, help="with --device: exit 0 once this many valid readings arrived")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to listen (default: 60)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="do not print each reading")
    p.add_argument("--as", dest="identity", default="", metavar="NAME",
                   help="use the verifier identity NAME ('sensorpub pki verifier --name NAME'): the local broker "
                        "binds client id to certificate, so two consumers at once need two identities")
    p.add_argument("--persistent", action="store_true",
                   help="use a fixed client id and a persistent session, so readings sent while verify was "
                        "not running are delivered on the next run")


def do_verify(args):
    from .. import target
    from ..fleet import Fleet
    from ..verify import Endpoint, Tracker, run_verify, verdict
    if args.count and not args.device:
        raise CommandError("--count needs --device NAME")
    if args.count < 0 or args.timeout <= 0:
        raise CommandError("--count must be >= 0 and --timeout > 0")
    v = Fleet(args.fleet).verifier_identity_dir(args.identity)
    if not (v / "verifier.pem").exists() and args.identity:
        raise CommandError(f"no verifier identity {args.identity!r} in fleet {args.fleet!r}: "
                           f"run 'sensorpub pki verifier --name {args.identity}' first")
    t = target.resolve(args.fleet, args.target, args.host, args.port, args.alpn, args.aws_root_ca,
                       account=lambda: aws_account(args))
    ep = Endpoint(t.host, t.port, t.ca_file, v / "verifier.pem", v / "verifier.key.pem",
                  client_id=f"sensorpub-verifier-{args.fleet}" if args.persistent else f"sensorpub-verifier-{os.getpid()}",
                  alpn=target.ALPN if args.alpn else None, clean_session=not args.persistent)
    tracker = Tracker()
    say(f"verifying on {t.host}:{t.port} for {args.timeout:g} s"
        + (f", until {args.count} readings from {args.device}" if args.count else ""))
    ok = run_verify(ep, tracker, device=args.device, count=args.count, timeout=args.timeout,
                    on_line=(lambda _l: None) if args.quiet or args.json else print,
                    on_ready=lambda: say("subscribed: readings published from now on are counted"))
    print(json.dumps(tracker.summary(), indent=2) if args.json else tracker.table())
    return verdict(tracker, ok, args.device, args.count, args.timeout)
