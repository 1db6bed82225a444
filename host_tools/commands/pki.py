"""`sensorpub pki`: the fleet CA and the server, device and verifier identities; revocation and renewal."""
import json

from ..errors import CommandError
from .common import actions, add_fleet, add_verifier_connection, command, say, verifier_endpoint

EPILOG = """examples:
  sensorpub pki init
  sensorpub pki server --host localhost --ip 127.0.0.1
  sensorpub pki device dev1
  sensorpub pki device dev001 dev002 dev003           # several in one run (existing ones are skipped)
  sensorpub pki device --count 500 --prefix dev --json  # dev001..dev500; run it again to finish a killed batch
  sensorpub pki verifier
  sensorpub pki verifier --name bridge   # a second consumer with its own client id
  sensorpub pki list --fleet demo
  sensorpub pki revoke dev1
  sensorpub pki renew dev1     # then: sensorpub flash --certs-only --port /dev/ttyUSB0 --device dev1
  sensorpub pki renew dev1 --push              # over MQTT, for the key dev1 has; waits for dev1 to use it
  sensorpub pki renew dev1 --push --timeout 5 --json || echo "dev1 takes it at its next connection"
  sensorpub pki list --live    # which certificate each device reports running (asks the fleet's broker)
  sensorpub pki crl            # re-sign the CRL (broker start does it when it is near its end)"""

ACTIONS = (("init", "create the fleet CA"), ("server", "issue the broker's server certificate"),
           ("device", "issue device identities (PEM for the host, DER for the board): one, several, or --count N"),
           ("verifier", "issue the host-side verifier identity"),
           ("list", "list the fleet's identities (warns of certificates expiring within 30 days)"),
           ("revoke", "revoke a device (and its earlier certificates) and update the CRL"),
           ("renew", "new certificate for a device (new key; --push: for its key, sent over MQTT); the old one "
                     "works until it expires"),
           ("crl", "re-sign the CRL with a fresh next_update"))


def argparse_pki(sub):
    p = command(sub, "pki", "make the fleet CA and the server, device and verifier identities", EPILOG)
    for name, a in actions(p, ACTIONS).items():
        add_fleet(a)
        if name in ("init", "server", "device", "verifier", "renew"):
            a.add_argument("--key-type", choices=("ec256", "rsa2048"), default=None if name == "renew" else "ec256",
                           help="key algorithm (default: ec256, EC P-256)" + ("; not with --push, which keeps "
                                                                             "the device's key" if name == "renew"
                                                                             else ""))
        if name in ("init", "server", "device", "verifier"):
            a.add_argument("--force", action="store_true", help="replace existing files")
        if name in ("revoke", "renew"):
            a.add_argument("name", help="device name: letters, digits, '-' and '_'")
        if name == "device":
            _device_arguments(a)
        if name == "crl":
            a.add_argument("--days", type=int, default=365, help="next_update this many days ahead (default: 365)")
        if name == "verifier":
            a.add_argument("--name", default="", help="issue a named verifier identity (CN sensorpub-verifier-NAME) "
                                                      "for a second consumer; the broker binds client id to CN")
        if name == "server":
            a.add_argument("--host", action="append", default=[], help="DNS name of the broker (repeatable)")
            a.add_argument("--ip", action="append", default=[], help="IP address of the broker (repeatable)")
        if name == "list":
            a.add_argument("--json", action="store_true", help="print JSON")
            a.add_argument("--live", action="store_true",
                           help="also ask the fleet's broker which certificate each device reports running "
                                "(its retained status; connects as a verifier)")
            a.add_argument("--wait", type=float, default=2.0, help="--live: seconds to collect statuses (default: 2)")
        if name in ("renew", "list"):
            add_verifier_connection(a, "--live/--push: " if name == "list" else "--push: ")
        if name == "renew":
            a.add_argument("--push", action="store_true",
                           help="issue the certificate for the key the device already has and send it on its "
                                "retained certificate topic over MQTT (the key never travels); wait for its answer")
            a.add_argument("--timeout", type=float, default=60.0,
                           help="--push: seconds to wait for the device's answer (default: 60)")
            a.add_argument("--json", action="store_true", help="--push: print the result as JSON")


def do_pki(args):
    from .. import crl, pki
    if args.action == "init":
        path = pki.init_ca(args.fleet, args.key_type, args.force, progress=say)
    elif args.action == "server":
        path = pki.issue_server(args.fleet, args.host, args.ip, args.key_type, args.force, progress=say)
    elif args.action == "device":
        return _device(args)
    elif args.action == "verifier":
        path = pki.issue_verifier(args.fleet, args.key_type, args.force, progress=say, name=args.name)
        _reload_broker(args.fleet, "its ACL now lets this verifier read")
    elif args.action == "revoke":
        serial = crl.revoke_device(args.fleet, args.name)
        print(f"revoked {args.name} (serial {serial:x}, and any earlier certificate of it); if it is registered "
              f"with AWS IoT, also run 'sensorpub aws revoke {args.name}'")
        _reload_broker(args.fleet, "it loaded the new CRL")
        return 0
    elif args.action == "renew":
        return _renew(args)
    elif args.action == "crl":
        if not 1 <= args.days <= 3650:
            raise CommandError(f"--days {args.days}: give 1 to 3650")
        when = crl.refresh_crl(args.fleet, args.days)
        print(f"re-signed {pki.Fleet(args.fleet).crl}, next update {when:%Y-%m-%d}")
        _reload_broker(args.fleet, "it loaded the new CRL")
        return 0
    else:
        ids = pki.list_identities(args.fleet)
        return _list(ids, args.json, pki.EXPIRY_WARN_DAYS, _live(args) if args.live else None)
    print(f"wrote {path}")
    return 0


def _device_arguments(a) -> None:
    a.add_argument("names", nargs="*", metavar="NAME",
                   help="device name(s): letters, digits, '-' and '_'; several make a batch")
    a.add_argument("--count", type=int, metavar="N",
                   help="make N devices PREFIX001..PREFIXN (at least 3 digits; at most 100000 in one run)")
    a.add_argument("--prefix", metavar="PREFIX", help="name prefix for --count (default: dev)")
    a.add_argument("--start", type=int, metavar="K", help="first number for --count (default: 1)")
    a.add_argument("--json", action="store_true", help="print the created and skipped identities as JSON")


def _device(args) -> int:
    """One name: as it always was (refuses to overwrite without --force). Several or --count: a batch."""
    from .. import batch, pki
    names = batch.batch_names(args.names, args.count, args.prefix, args.start)
    if args.count is not None or len(names) > 1:
        return _batch(args, names)
    existed = (pki.Fleet(args.fleet).device_dir(names[0]) / "client.pem").exists()
    path = pki.issue_device(args.fleet, names[0], args.key_type, args.force, progress=say)
    if args.json:
        print(json.dumps([{"name": names[0], "status": "replaced" if existed else "created",
                           "path": str(path.parent)}], indent=2))
    else:
        print(f"wrote {path}")
    return 0


def _batch(args, names) -> int:
    """Many names in one process, with a progress bar on stderr; Ctrl-C stops between two identities."""
    import sys
    from tqdm import tqdm
    from .. import batch
    results: list = []
    with tqdm(total=len(names), unit="id", desc="pki device", file=sys.stderr, dynamic_ncols=True) as bar:
        def done(outcome):
            results.append(outcome)
            bar.update()
        try:
            batch.issue_devices(args.fleet, names, args.key_type, args.force, done=done,
                                progress=lambda msg: tqdm.write(msg, file=sys.stderr))
        except KeyboardInterrupt:
            made = sum(o.status != "skipped" for o in results)
            raise CommandError(f"interrupted after {made} new identities: run the same command again to make "
                               "the rest (those that exist are skipped)", 130) from None
    _report(results, args.json)
    return 0


def _report(results, as_json: bool) -> None:
    """JSON of every name on stdout (--json), and one summary line: stdout, or stderr with --json."""
    count = {s: sum(o.status == s for o in results) for s in ("created", "replaced", "skipped")}
    line = f"wrote {count['created'] + count['replaced']} device identities under {results[0].path.parent}"
    if count["replaced"]:
        line += f" ({count['replaced']} re-issued: the certificates they replace are revoked)"
    if count["skipped"]:
        line += f"; skipped {count['skipped']} that exist (--force re-issues them)"
    if as_json:
        print(json.dumps([{"name": o.name, "status": o.status, "path": str(o.path)} for o in results], indent=2))
        say(line)
    else:
        print(line)


def _renew(args) -> int:
    from .. import pki
    if not args.push:
        path = pki.renew_device(args.fleet, args.name, args.key_type or "ec256", progress=say)
        print(f"wrote {path}; put it on the board with 'sensorpub flash --certs-only --port PORT --device {args.name}' "
              f"(or renew over MQTT instead: 'sensorpub pki renew {args.name} --push')")
        return 0
    from .. import renewal
    from ..contract import CERT_FILE
    from ..remote_config import EXIT_LOCAL, EXIT_NO_ANSWER, EXIT_REFUSED, state_of
    if args.key_type:
        raise CommandError("--key-type: --push issues the certificate for the key the device has (a new key "
                           "needs 'pki renew NAME' without --push, then 'sensorpub flash --certs-only')", EXIT_LOCAL)
    if not args.timeout > 0:
        raise CommandError("--timeout must be a number of seconds above 0", EXIT_LOCAL)
    ep, t = verifier_endpoint(args)  # before issuing: a missing --as identity is said with nothing written
    path = pki.renew_device(args.fleet, args.name, progress=say, keep_key=True)
    cert = pki.load_cert(path)
    serial = f"{cert.serial_number:x}"
    say(f"pki renew: wrote {path} (serial {serial}, valid until {cert.not_valid_after_utc:%Y-%m-%d}); connecting to "
        f"{t.host}:{t.port} as the verifier{' ' + args.identity if args.identity else ''}")
    out = renewal.push(ep, args.name, (path.parent / CERT_FILE).read_bytes(), serial, args.timeout, progress=say)
    if args.json:
        print(json.dumps(out.as_json(), indent=2))
    if out.result == renewal.IN_USE:
        if not args.json:
            print(f"{args.name} runs certificate {serial} (was {out.previous or '?'}); it is valid until "
                  f"{cert.not_valid_after_utc:%Y-%m-%d}")
        return 0
    if out.result == renewal.REFUSED:
        raise CommandError(f"{args.name} refused certificate {serial}: "
                           f"{renewal.refusal_text(renewal.refused(out.status))}; it still runs certificate "
                           f"{renewal.running(out.status) or '?'}", EXIT_REFUSED)
    raise CommandError(f"{args.name} did not answer within {args.timeout:g} s (its status: {state_of(out.status)}); "
                       f"certificate {serial} stays retained and it tries it at its next connection",
                       EXIT_NO_ANSWER)


def _live(args) -> dict:
    """{device: the serial of the certificate it reports running, or None} from the fleet's broker."""
    from ..contract import CERT_KEY
    from ..fleet_status import from_messages, listen
    ep, t = verifier_endpoint(args)
    say(f"pki list: reading the devices' retained statuses from {t.host}:{t.port} for {args.wait:g} s")
    return {r["device"]: r[CERT_KEY] if isinstance(r[CERT_KEY], str) else None
            for r in from_messages(listen(ep, args.wait))}


def _running(i, live: dict) -> str:
    """What a device reports: 'yes' (this certificate), another serial, '-' (no report)."""
    r = live.get(i.name)
    return "-" if r is None else "yes" if r == f"{i.serial:x}" else r


def _list(ids, as_json: bool, warn_days: int, live=None) -> int:
    if as_json:
        rows = [{"role": i.role, "name": i.name, "serial": f"{i.serial:x}", "key_type": i.key_type,
                 "not_after": i.not_after.isoformat(), "revoked": i.revoked,
                 "expires_in_days": i.expires_in_days} for i in ids]
        if live is not None:
            for r, i in zip(rows, ids):
                if i.role == "device":
                    r["running"] = live.get(i.name)
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'role':<9} {'name':<26} {'key':<8} {'not after':<20} {'revoked':<7} serial"
              + ("  (in use: yes, or the serial the device runs)" if live is not None else ""))
        for i in ids:
            use = f"  {_running(i, live)}" if live is not None and i.role == "device" else ""
            print(f"{i.role:<9} {i.name:<26} {i.key_type:<8} {i.not_after:%Y-%m-%d %H:%M}Z    "
                  f"{'yes' if i.revoked else 'no':<7} {i.serial:x}{use}")
    for i in ids:
        left = i.expires_in_days
        if not i.revoked and left < warn_days:
            fix = f"sensorpub pki renew {i.name} --push" if i.role == "device" else f"sensorpub pki {i.role} --force"
            say(f"warning: the {i.role} certificate of {i.name} " + (f"expires in {left} days" if left >= 0 else
                "has expired") + f": run '{fix}'")
    return 0


def _reload_broker(fleet: str, what: str) -> None:
    from ..broker import Broker
    if Broker(fleet).reload():
        say(f"the fleet's running broker reloaded: {what}")
    else:
        say("the fleet's broker is not running: 'sensorpub broker start' will load it")
