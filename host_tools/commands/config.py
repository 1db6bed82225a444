"""`sensorpub config`: a device's remote config, set over MQTT as the verifier (the operator), and read back."""
import json

from ..errors import CommandError
from .common import actions, add_fleet, add_verifier_connection, command, say, verifier_endpoint

EPILOG = """The device's config topic devices/<id>/config holds one retained document {"version": N, "set": {...}}:
every override, on top of the device's flashed /config.json (a key left out goes back to its flashed value). Only the
keys firmware/config.py lists in REMOTE change over the air; each key is checked here with the firmware's own
rules before anything is sent. The device answers on its retained status: the version it runs, or what it
refused and why. An offline device applies the document at its next connection: it stays retained.
exit status (set): 0 the device applied it (or already ran it); 2 usage, or a key refused here (nothing sent);
  3 could not connect, or the broker refused or dropped the document; 4 the device did not answer within
  --timeout; 5 the device refused it (it keeps the config it ran); 1 other errors
exit status (get): 0 printed; 3 could not connect or was refused; 1 other errors
examples:
  sensorpub config set --device dev1 interval_s=60 health_every=5
  sensorpub config set --device dev1 --unset health_every      # back to its flashed value
  sensorpub config set --device dev1 interval_s=300 --timeout 5 || echo "dev1 applies it when back online"
  sensorpub config get --device dev1
  sensorpub config get --device dev1 --json | jq .latest
  sensorpub config set --device dev1 interval_s=10 --as ops --port 18883   # verifier identity 'ops'"""

ACTIONS = (("set", "change a device's remote config (KEY=VALUE ..., --unset KEY) and wait for its answer"),
           ("get", "the remote config a device should run, and the one it reports running"))


def argparse_config(sub):
    p = command(sub, "config", "a device's remote config over MQTT: set it, read it back", EPILOG)
    for name, a in actions(p, ACTIONS).items():
        add_fleet(a)
        a.add_argument("--device", required=True, help="the device (its certificate CN)")
        add_verifier_connection(a)
        a.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "set":
            a.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                           help="an override; VALUE is JSON (60, true, \"text\") or a bare word (a string)")
            a.add_argument("--unset", action="append", default=[], metavar="KEY",
                           help="drop this override: the key goes back to its flashed value (repeatable)")
            a.add_argument("--timeout", type=float, default=60.0,
                           help="seconds to wait for the device's answer (default: 60)")


def do_config(args):
    from .. import remote_config as rc
    from ..paths import check_name
    try:
        check_name("device", args.device)  # it goes into topics: no '+', '#' or '/'
    except CommandError as e:
        raise CommandError(str(e), rc.EXIT_LOCAL) from None
    if args.action == "get":
        return _get(args, rc)
    if not args.assignments and not args.unset:
        raise CommandError("say what to change: KEY=VALUE ... and/or --unset KEY", rc.EXIT_LOCAL)
    if not args.timeout > 0:
        raise CommandError("--timeout must be a number of seconds above 0", rc.EXIT_LOCAL)
    sets = rc.parse_assignments(args.assignments)
    both = sorted(set(sets) & set(args.unset))
    if both:
        raise CommandError(f"{both[0]} is both set and --unset: say one", rc.EXIT_LOCAL)
    rc.check(sets, args.device)  # before connecting: nothing is sent for a key the device would refuse
    out = rc.send(_endpoint(args), args.device, sets, args.unset, args.timeout, progress=say)
    if args.json:
        print(json.dumps(out.as_json(), indent=2))
    dev = rc.clean(args.device)
    if out.result == "applied":
        if not args.json:
            print(f"{dev} applied config {out.version}: {rc.show(out.keys)}")
        return 0
    if out.result == "refused":
        was = rc.running(out.status)
        raise CommandError(f"{dev} refused config {out.version}: {rc.refusal_text(rc.refused(out.status))}; "
                           f"it still runs {f'config {was}' if was else 'its flashed config'}", rc.EXIT_REFUSED)
    old_fw = out.status and out.status.get(rc.STATE_KEY) == rc.ONLINE and rc.running(out.status) is None
    hint = f" (its status has no '{rc.CONFIG_KEY}': firmware without remote config? re-flash it)" if old_fw else ""
    raise CommandError(f"{dev} did not answer within {args.timeout:g} s (its status: {rc.state_of(out.status)}){hint}; "
                       f"config {out.version} stays retained and it applies it at its next connection",
                       rc.EXIT_NO_ANSWER)


def _get(args, rc):
    doc, status = rc.read(_endpoint(args), args.device)
    want = doc[rc.VERSION_KEY] if doc else 0
    run, ref = rc.running(status), rc.refused(status)
    latest = run is not None and run >= want
    if args.json:
        print(json.dumps({"device": args.device, "desired": doc, "running": run, "latest": latest,
                          "refused": ref, "state": rc.state_of(status), "status": status}, indent=2))
        return 0
    dev = rc.clean(args.device)
    print(f"{dev} desired: " + (f"config {want}: {rc.show(doc[rc.SET_KEY])}" if doc else
                                "no remote config (it runs its flashed config)"))
    if status is None:
        print(f"{dev} reports: nothing (no retained status: never connected?)")
        return 0
    if run is not None:
        runs = (f"runs config {run}" if run else "runs no remote config") + \
            (", the latest" if latest else f", not the latest ({want})")
    elif status.get(rc.STATE_KEY) == rc.ONLINE:
        runs = f"its status has no '{rc.CONFIG_KEY}': firmware without remote config? re-flash it"
    else:
        runs = "it reads the retained config at its next connection"
    print(f"{dev} reports: {rc.state_of(status)}; {runs}")
    if ref:
        print(f"{dev} refused config {ref.get(rc.VERSION_KEY)}: {rc.refusal_text(ref)}")
    return 0


def _endpoint(args):
    ep, t = verifier_endpoint(args)
    say(f"config: connecting to {t.host}:{t.port} as the verifier{' ' + args.identity if args.identity else ''}")
    return ep
