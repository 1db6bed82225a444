"""`sensorpub` command line: one table of subcommands, each a do_<name> handler and an argparse factory.

Handlers stay thin; the work is in library functions the tests call directly. Any CommandError
becomes one line on stderr and exit status 1; argparse mistakes are one line and exit status 2.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import CommandError

EPILOGS = {
    "pki": "examples:\n  sensorpub pki init\n  sensorpub pki server --host localhost --ip 127.0.0.1\n"
           "  sensorpub pki device dev1\n  sensorpub pki verifier\n"
           "  sensorpub pki verifier --name bridge   # a second consumer with its own client id\n"
           "  sensorpub pki list --fleet demo\n"
           "  sensorpub pki revoke dev1\n"
           "  sensorpub pki renew dev1     # then: sensorpub flash --certs-only --port /dev/ttyUSB0 --device dev1\n"
           "  sensorpub pki crl            # re-sign the CRL (broker start does it when it is near its end)",
    "broker": "examples:\n  sensorpub broker start --port 8883\n  sensorpub broker status\n"
              "  sensorpub broker start --port 8884 --aws-policy --server-fleet amazon-standin   # AWS rehearsal\n"
              "  sensorpub broker logs -n 20\n  sensorpub broker stop",
    "vboard": "examples:\n  sensorpub vboard start                 # prints the pty to give to mpremote\n"
              "  sensorpub vboard start --heapsize 64k --erase\n"
              "  sensorpub vboard start --name esp --board esp32_generic --micropython 1.24 --erase\n"
              "  sensorpub vboard hw --name esp wifi.up=false      # the access point goes away\n"
              "  sensorpub vboard hw --name esp dht22.fault=timeout\n"
              "  sensorpub vboard power-cut --name esp               # mid-write, mid-publish: nothing may be lost\n"
              "  sensorpub vboard status\n"
              "  mpremote connect $(sensorpub vboard port) fs ls\n  sensorpub vboard stop",
    "aws": "examples:\n  sensorpub aws register-ca --region eu-west-1\n  sensorpub aws register-device dev1\n"
           "  sensorpub aws register-verifier\n  sensorpub aws endpoint\n"
           "  sensorpub aws jitp-template > jitp.json\n"
           "  sensorpub aws register-ca --jitp jitp.json --jitp-role arn:aws:iam::123456789012:role/sensorpub-jitp\n"
           "  sensorpub aws revoke dev1     # after 'sensorpub pki revoke dev1'\n"
           "  sensorpub aws teardown dev1 --yes\n  sensorpub aws teardown --all\n"
           "region and credentials come from --region/--profile or the usual AWS_REGION, AWS_PROFILE, ~/.aws files",
    "flash": "examples:\n  sensorpub flash --port vboard --device dev1 --interval 2   # --board inferred\n"
             "  sensorpub flash --port /dev/ttyUSB0 --device dev1 --board esp32_generic \\\n"
             "      --broker-host 192.168.1.10 --wifi-ssid home --mpy   # Wi-Fi password from $SENSORPUB_WIFI_PASSWORD\n"
             "  sensorpub flash --target aws --region eu-west-1 --port /dev/ttyUSB0 --device dev1 --board esp32_generic \\\n"
             "      --wifi-ssid home\n"
             "  sensorpub flash --certs-only --port /dev/ttyUSB0 --device dev1   # after 'sensorpub pki renew dev1'",
    "console": "examples:\n  sensorpub console --port vboard -f\n  sensorpub console --port /dev/ttyUSB0 -f",
    "verify": "exit status: 0 every expected reading arrived valid, no gap; 3 could not connect or was refused;\n"
              "  4 timed out before --count readings (or none at all); 5 gaps in seq; 6 malformed payloads\n"
              "examples:\n  sensorpub verify --device dev1 --count 3 --timeout 60\n"
              "  sensorpub verify --timeout 120 --json\n"
              "  sensorpub verify --target aws --region eu-west-1 --device dev1 --count 2 --timeout 120\n"
              "  sensorpub verify --target aws --alpn --device dev1 --count 2   # port 443, ALPN x-amzn-mqtt-ca",
}


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + line
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fleet(p):
    p.add_argument("--fleet", default="demo", help="fleet name (default: demo)")


# --- pki ---------------------------------------------------------------------------------------

def argparse_pki(sub):
    p = sub.add_parser("pki", help="make the fleet CA and the server, device and verifier identities",
                       epilog=EPILOGS["pki"], formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    for name, helptext in (("init", "create the fleet CA"), ("server", "issue the broker's server certificate"),
                           ("device", "issue a device identity (PEM for the host, DER for the board)"),
                           ("verifier", "issue the host-side verifier identity"),
                           ("list", "list the fleet's identities (warns of certificates expiring within 30 days)"),
                           ("revoke", "revoke a device (and its earlier certificates) and update the CRL"),
                           ("renew", "new key and certificate for a device; the old one works until it expires"),
                           ("crl", "re-sign the CRL with a fresh next_update")):
        a = s.add_parser(name, help=helptext, description=helptext)
        _fleet(a)
        if name in ("init", "server", "device", "verifier"):
            a.add_argument("--key-type", choices=("ec256", "rsa2048"), default="ec256",
                           help="key algorithm (default: ec256, EC P-256)")
            a.add_argument("--force", action="store_true", help="replace existing files")
        if name in ("device", "revoke", "renew"):
            a.add_argument("name", help="device name: letters, digits, '-' and '_'")
        if name == "renew":
            a.add_argument("--key-type", choices=("ec256", "rsa2048"), default="ec256", help="key algorithm")
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


def do_pki(args):
    from . import pki
    if args.action == "init":
        path = pki.init_ca(args.fleet, args.key_type, args.force, progress=_say)
    elif args.action == "server":
        path = pki.issue_server(args.fleet, args.host, args.ip, args.key_type, args.force, progress=_say)
    elif args.action == "device":
        path = pki.issue_device(args.fleet, args.name, args.key_type, args.force, progress=_say)
    elif args.action == "verifier":
        path = pki.issue_verifier(args.fleet, args.key_type, args.force, progress=_say, name=args.name)
        _reload_broker(args.fleet, "its ACL now lets this verifier read")
    elif args.action == "revoke":
        serial = pki.revoke_device(args.fleet, args.name)
        print(f"revoked {args.name} (serial {serial:x}, and any earlier certificate of it); if it is registered "
              f"with AWS IoT, also run 'sensorpub aws revoke {args.name}'")
        _reload_broker(args.fleet, "it loaded the new CRL")
        return 0
    elif args.action == "renew":
        path = pki.renew_device(args.fleet, args.name, args.key_type, progress=_say)
        print(f"wrote {path}; put it on the board with 'sensorpub flash --certs-only --port PORT --device {args.name}'")
        return 0
    elif args.action == "crl":
        if not 1 <= args.days <= 3650:
            raise CommandError(f"--days {args.days}: give 1 to 3650")
        when = pki.refresh_crl(args.fleet, args.days)
        print(f"re-signed {pki.Fleet(args.fleet).crl}, next update {when:%Y-%m-%d}")
        _reload_broker(args.fleet, "it loaded the new CRL")
        return 0
    else:
        ids = pki.list_identities(args.fleet)
        if args.json:
            print(json.dumps([{"role": i.role, "name": i.name, "serial": f"{i.serial:x}", "key_type": i.key_type,
                               "not_after": i.not_after.isoformat(), "revoked": i.revoked,
                               "expires_in_days": (i.not_after - pki._now()).days} for i in ids], indent=2))
        else:
            print(f"{'role':<9} {'name':<26} {'key':<8} {'not after':<20} {'revoked':<7} serial")
            for i in ids:
                print(f"{i.role:<9} {i.name:<26} {i.key_type:<8} {i.not_after:%Y-%m-%d %H:%M}Z    "
                      f"{'yes' if i.revoked else 'no':<7} {i.serial:x}")
        for i in ids:
            left = (i.not_after - pki._now()).days
            if not i.revoked and left < pki.EXPIRY_WARN_DAYS:
                fix = f"sensorpub pki renew {i.name}" if i.role == "device" else f"sensorpub pki {i.role} --force"
                _say(f"warning: the {i.role} certificate of {i.name} " + (f"expires in {left} days" if left >= 0 else
                     "has expired") + f": run '{fix}'")
        return 0
    print(f"wrote {path}")
    return 0


def _reload_broker(fleet: str, what: str) -> None:
    from .broker import Broker
    if Broker(fleet).reload():
        _say(f"the fleet's running broker reloaded: {what}")
    else:
        _say("the fleet's broker is not running: 'sensorpub broker start' will load it")


# --- broker ------------------------------------------------------------------------------------

def argparse_broker(sub):
    p = sub.add_parser("broker", help="run a local Mosquitto with mutual TLS for a fleet",
                       epilog=EPILOGS["broker"], formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    for name, helptext in (("start", "write the config and start mosquitto, wait until TLS is up"),
                           ("stop", "stop the fleet's mosquitto"), ("status", "is it running, where"),
                           ("logs", "print the end of the broker log")):
        a = s.add_parser(name, help=helptext, description=helptext)
        _fleet(a)
        if name == "start":
            a.add_argument("--port", type=int, default=8883, help="TLS port (default: 8883)")
            a.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
            a.add_argument("--aws-policy", action="store_true",
                           help="rehearse AWS IoT locally: ACL rendered from the AWS policies 'sensorpub aws' uploads")
            a.add_argument("--server-fleet", metavar="FLEET",
                           help="serve the server certificate of this fleet's PKI (a separate root, e.g. one "
                                "standing in for Amazon's) instead of this fleet's")
        if name == "logs":
            a.add_argument("-n", "--lines", type=int, default=40, help="how many lines (default: 40)")
            a.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")


def do_broker(args):
    from .broker import Broker
    kw = {}
    if args.action == "start":
        from .aws import standin_acl
        kw = {"port": args.port, "bind": args.bind, "server_fleet": args.server_fleet or "",
              "acl": standin_acl() if args.aws_policy else None, "bind_client_id": not args.aws_policy}
    b = Broker(args.fleet, **kw)
    if args.action == "start":
        if not 0 < args.port < 65536:
            raise CommandError(f"--port {args.port} is not a TCP port: give 1-65535")
        pid = b.start(progress=_say)
        for note in b.notes:
            _say(note)
        print(f"broker for fleet {args.fleet!r} up on {args.bind}:{args.port} (pid {pid}, log {b.log_file})")
    elif args.action == "stop":
        print("stopped" if b.stop() else f"the broker for fleet {args.fleet!r} was not running")
    elif args.action == "status":
        pid = b.pid()
        lst = b.listener()
        where = f"{lst[0]} {lst[1]}" if lst else "?"
        print(f"running (pid {pid}, listener {where}, log {b.log_file})" if pid else "not running")
        return 0 if pid else 3
    else:
        _tail(b.log_file, args.lines, args.follow)
    return 0


def _tail(path, lines, follow):
    if not path.exists():
        raise CommandError(f"{path} does not exist yet: start it first")
    with open(path, "r", errors="replace") as f:
        for line in f.readlines()[-lines:] if lines > 0 else []:
            print(line, end="")
        while follow:
            line = f.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.2)


# --- aws ---------------------------------------------------------------------------------------

def _aws_flags(p, root_ca=False):
    p.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / the profile's)")
    p.add_argument("--profile", help="AWS profile from ~/.aws (default: AWS_PROFILE or 'default')")
    if root_ca:
        p.add_argument("--aws-root-ca", metavar="FILE",
                       help="CA that signs the server certificate (default: Amazon Root CA 1, shipped in "
                            "host_tools/data/AmazonRootCA1.pem)")


def _aws(args):
    from .aws import Aws, session_client
    return Aws(args.fleet, session_client(args.region, args.profile), progress=_say)


def argparse_aws(sub):
    p = sub.add_parser("aws", help="register the fleet CA, devices and least-privilege policies with AWS IoT Core",
                       epilog=EPILOGS["aws"], formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    for name, helptext in (
            ("register-ca", "register the fleet CA (verification certificate from the registration code), ACTIVE"),
            ("register-device", "register a device: certificate ACTIVE, thing, fleet policy, attachments"),
            ("register-verifier", "register the verifier identity with its read-only policy"),
            ("endpoint", "print the account's iot:Data-ATS endpoint"),
            ("jitp-template", "print a just-in-time provisioning template for the fleet"),
            ("revoke", "mark a device's certificates REVOKED in AWS IoT (after 'sensorpub pki revoke')"),
            ("teardown", "delete devices (or the whole fleet) from AWS IoT, in the order AWS requires")):
        a = s.add_parser(name, help=helptext, description=helptext)
        _fleet(a)
        if name != "jitp-template":
            _aws_flags(a)
        if name == "register-ca":
            a.add_argument("--jitp", metavar="TEMPLATE.json",
                           help="enable just-in-time provisioning with this template ('aws jitp-template' writes one)")
            a.add_argument("--jitp-role", metavar="ARN",
                           help="with --jitp: IAM role AWS IoT assumes to provision (AWSIoTThingsRegistration)")
        if name == "register-device":
            a.add_argument("names", nargs="+", metavar="NAME", help="device name(s), as given to 'pki device'")
        if name == "revoke":
            a.add_argument("name", metavar="NAME", help="device name")
        if name == "teardown":
            a.add_argument("names", nargs="*", metavar="NAME", help="device name(s) to delete")
            a.add_argument("--all", action="store_true",
                           help="delete every device, certificate and policy of the fleet and deregister its CA")
            a.add_argument("--yes", action="store_true", help="do not ask before deleting")


def do_aws(args):
    from . import aws
    if args.action == "jitp-template":
        print(json.dumps(aws.jitp_template(args.fleet), indent=2))
        return 0
    if args.action == "register-ca" and bool(args.jitp) != bool(args.jitp_role):
        raise CommandError("--jitp TEMPLATE.json and --jitp-role ARN go together: the role lets AWS IoT create the "
                           "thing (trust iot.amazonaws.com, managed policy AWSIoTThingsRegistration)")
    if args.action == "teardown" and bool(args.names) == bool(args.all):
        raise CommandError("say what to delete: device NAME(s) or --all")
    template = aws.load_template(args.jitp) if args.action == "register-ca" and args.jitp else None
    a = _aws(args)
    if args.action == "register-ca":
        d = a.register_ca(template, args.jitp_role)
        print(f"fleet CA {d['certificateId']} is {d['status']} in {a.region}"
              + (" with just-in-time provisioning" if template else "")
              + ("" if a.actions else " (already registered: nothing changed)"))
    elif args.action == "register-device":
        for n in args.names:
            r = a.register_device(n)
            print(f"{n}: certificate {r['certificateId'][:12]}... ACTIVE, thing {r['thing']}, policy {r['policy']}")
        if not a.actions:
            print("already registered: nothing changed")
    elif args.action == "register-verifier":
        r = a.register_verifier()
        print(f"verifier: certificate {r['certificateId'][:12]}... ACTIVE, policy {r['policy']}"
              + ("" if a.actions else " (already registered: nothing changed)"))
    elif args.action == "endpoint":
        print(a.endpoint())
    elif args.action == "revoke":
        changed = a.revoke_device(args.name)
        print(f"{args.name}: {len(changed)} certificate(s) set REVOKED in {a.region}" if changed else
              f"{args.name}: no ACTIVE certificate of it in {a.region}: nothing changed")
    else:
        plan = a.plan_teardown(None if args.all else args.names)
        lines = [f"thing {t}" for t in plan["things"]] + \
                [f"certificate {c.rsplit('/', 1)[-1][:12]}..." for c in plan["certificates"]] + \
                [f"policy {p}" for p in plan["policies"]] + (["the fleet CA registration"] if plan["ca"] else [])
        if not lines:
            print(f"nothing of fleet {args.fleet!r} to delete in {a.region}")
            return 0
        print(f"in {a.region}, this deletes: " + ", ".join(lines))
        if not args.yes:
            if not sys.stdin.isatty():
                raise CommandError("not deleting without confirmation: pass --yes")
            if input("delete? [y/N] ").strip().lower() not in ("y", "yes"):
                raise CommandError("nothing deleted")
        a.teardown(plan)
        print(f"deleted {len(lines)} resources")
    return 0


# --- verify ------------------------------------------------------------------------------------

def argparse_verify(sub):
    p = sub.add_parser("verify", help="subscribe as the verifier and check every reading arrives",
                       epilog=EPILOGS["verify"], formatter_class=argparse.RawDescriptionHelpFormatter)
    _fleet(p)
    p.add_argument("--target", choices=("local", "aws"), default="local",
                   help="local Mosquitto (default) or AWS IoT Core")
    p.add_argument("--host", help="broker host (default: localhost; with --target aws the account's ATS endpoint)")
    p.add_argument("--port", type=int, help="broker port (default: 8883; 443 with --alpn)")
    p.add_argument("--alpn", action="store_true", help="AWS: connect on 443 with ALPN x-amzn-mqtt-ca")
    _aws_flags(p, root_ca=True)
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
    from .pki import Fleet
    from .verify import Endpoint, Tracker, run_verify, verdict
    if args.count and not args.device:
        raise CommandError("--count needs --device NAME")
    if args.count < 0 or args.timeout <= 0:
        raise CommandError("--count must be >= 0 and --timeout > 0")
    f = Fleet(args.fleet)
    v = f.verifier_identity_dir(args.identity)
    if not (v / "verifier.pem").exists() and args.identity:
        raise CommandError(f"no verifier identity {args.identity!r} in fleet {args.fleet!r}: "
                           f"run 'sensorpub pki verifier --name {args.identity}' first")
    host, ca_file = args.host or "localhost", f.ca_cert
    if args.target == "aws":
        from . import aws
        ca_file = Path(args.aws_root_ca) if args.aws_root_ca else aws.ROOT_CA_FILE
        aws.amazon_root_ca(args.aws_root_ca)  # checks the file (and the shipped one's fingerprint)
        host = args.host or _aws(args).endpoint()
    elif args.alpn or args.aws_root_ca:
        raise CommandError("--alpn and --aws-root-ca are for --target aws")
    port = args.port or (443 if args.alpn else 8883)
    ep = Endpoint(host, port, ca_file, v / "verifier.pem", v / "verifier.key.pem",
                  client_id=f"sensorpub-verifier-{args.fleet}" if args.persistent else f"sensorpub-verifier-{os.getpid()}",
                  alpn="x-amzn-mqtt-ca" if args.alpn else None, clean_session=not args.persistent)
    tracker = Tracker()
    _say(f"verifying on {host}:{port} for {args.timeout:g} s"
         + (f", until {args.count} readings from {args.device}" if args.count else ""))
    ok = run_verify(ep, tracker, device=args.device, count=args.count, timeout=args.timeout,
                    on_line=(lambda _l: None) if args.quiet or args.json else print)
    print(json.dumps(tracker.summary(), indent=2) if args.json else tracker.table())
    return verdict(tracker, ok, args.device, args.count, args.timeout)


# --- vboard, flash, console ----------------------------------------------------------------------

def argparse_vboard(sub):
    p = sub.add_parser("vboard", help="a virtual board: Unix-port MicroPython on a pty that mpremote talks to",
                       epilog=EPILOGS["vboard"], formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    for name, helptext in (("start", "start it; prints the pty path"), ("stop", "stop it (the flash image stays)"),
                           ("status", "is it running, on which pty"), ("port", "print the pty path only"),
                           ("hw", "an emulated ESP32's hardware: show it (JSON), or script faults with KEY=VALUE"),
                           ("power-cut", "cut the power at whatever the board is doing; it boots again (power-on)")):
        a = s.add_parser(name, help=helptext, description=helptext)
        a.add_argument("--name", default="vb0", help="which virtual board (default: vb0)")
        if name == "hw":
            a.add_argument("set", nargs="*", metavar="KEY=VALUE",
                           help="e.g. wifi.up=false, wifi.in_range=false, dht22.fault=timeout|garbage|hang (null "
                                "clears), ds18b20.fault=absent, ntp.reachable=false")
        if name == "start":
            a.add_argument("--board", default="unix", help="unix (default), or an emulated ESP32: esp32_generic, "
                                                           "esp32_s3, esp32_c3")
            a.add_argument("--micropython", help="emulated ESP32: the MicroPython release it runs, e.g. 1.24 "
                                                 "(default: the newest supported); decides the frozen umqtt.simple")
            a.add_argument("--umqtt", help="the frozen umqtt.simple instead: standin, standin-1.4.0, real-1.4.0 "
                                           "(from UMQTT_VERSIONS), a folder holding umqtt/simple.py, or none")
            a.add_argument("--heapsize", help="MicroPython heap (default: 100k; an emulated ESP32: sized from the board's, "
                                                "see host_tools/vboard/profiles.py)")
            a.add_argument("--flash-kb", type=int, default=2048, help="LittleFS flash size in KB (default: 2048)")
            a.add_argument("--erase", action="store_true", help="start with an erased flash")


def do_vboard(args):
    from .vboard import VBoard
    vb = VBoard(args.name)
    if args.action == "start":
        st = vb.start(args.heapsize, args.flash_kb, args.erase, board=args.board, micropython=args.micropython,
                      umqtt=args.umqtt)
        print(st["pty"])
        mp = f", MicroPython {st['micropython']}" if st.get("micropython") else ""
        _say(f"virtual board {args.name!r} running: {args.board}{mp}, {st['umqtt']}, heap {st['heapsize']}, "
             f"flash {args.flash_kb} KB; console: sensorpub console --port vboard:{args.name} -f")
    elif args.action == "stop":
        print("stopped" if vb.stop() else f"virtual board {args.name!r} was not running")
    elif args.action == "port":
        print(vb.port)
    elif args.action == "power-cut":
        vb.power_cut()
        print(f"power cut on virtual board {args.name!r}: it boots again with reset cause power-on")
    elif args.action == "hw":
        from .vboard import hw
        if not (vb.rom / "hw.json").exists():
            raise CommandError(f"virtual board {args.name!r} is not an emulated ESP32: "
                               "'sensorpub vboard start --board esp32_generic' first")
        state = hw.update(vb.rom, hw.parse_faults(args.set)) if args.set else hw.read(vb.rom)
        print(json.dumps(state, indent=1, sort_keys=True))
    else:
        st = vb.state()
        print(f"running on {st['pty']} (pid {st['pid']}, heap {st['heapsize']}, console {vb.console_log})"
              if st else "not running")
        return 0 if st else 3
    return 0


def argparse_flash(sub):
    p = sub.add_parser("flash", help="copy firmware, board file, credentials and config to a board",
                       epilog=EPILOGS["flash"], formatter_class=argparse.RawDescriptionHelpFormatter)
    _fleet(p)
    p.add_argument("--port", required=True, help="serial port, or 'vboard' / 'vboard:NAME' for a virtual board")
    p.add_argument("--device", required=True, help="device identity to install (from 'sensorpub pki device')")
    p.add_argument("--board", help="board file from boards/ (unix, esp32_generic, esp32_s3, esp32_c3); default: the one "
                                   "that fits what the board reports (a mismatch is refused)")
    p.add_argument("--target", choices=("local", "aws"), default="local",
                   help="local Mosquitto (default) or AWS IoT Core: endpoint, Amazon Root CA 1, client id = thing name")
    p.add_argument("--broker-host", help="broker host as the board sees it (default: localhost; with --target aws "
                                         "the account's ATS endpoint)")
    p.add_argument("--broker-port", type=int, default=8883, help="broker port (default: 8883)")
    p.add_argument("--interval", type=int, default=30, help="seconds between readings (default: 30)")
    p.add_argument("--wifi-ssid", default="", help="Wi-Fi network (ESP32 boards)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config.json key, e.g. --set sensor=ds18b20 --set sensor_pin=15")
    _aws_flags(p, root_ca=True)
    p.add_argument("--mpy", action="store_true", help="precompile the firmware with mpy-cross")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    p.add_argument("--certs-only", action="store_true",
                   help="replace only the certificate and key files (after 'sensorpub pki renew'); the board "
                        "must already be flashed as --device")


def do_flash(args):
    from .flash import build_config, flash, parse_sets
    extra = parse_sets(args.set)
    if args.wifi_ssid:
        extra["wifi_ssid"] = args.wifi_ssid
    if os.environ.get("SENSORPUB_WIFI_PASSWORD"):  # from the environment, so it stays out of shell history
        extra["wifi_password"] = os.environ["SENSORPUB_WIFI_PASSWORD"]
    host, ca_der = args.broker_host or "localhost", None
    if args.target == "aws":
        from . import aws
        from cryptography.hazmat.primitives.serialization import Encoding
        ca_der = aws.amazon_root_ca(args.aws_root_ca).public_bytes(Encoding.DER)
        if extra.setdefault("client_id", args.device) != args.device:
            raise CommandError(f"--target aws: client_id must be the thing name {args.device!r}: the fleet policy "
                               "lets a device connect only as its thing")
        if extra.get("topic_prefix", aws.TOPIC_PREFIX) != aws.TOPIC_PREFIX:
            raise CommandError(f"--target aws: topic_prefix must be {aws.TOPIC_PREFIX!r}: the fleet policy allows "
                               f"publishing only to {aws.TOPIC_PREFIX}/<thing>/telemetry and /status")
        if not args.broker_host:
            a = _aws(args)
            host = a.endpoint()
            if not a.is_registered(args.device):
                _say(f"warning: {args.device} is not registered in {a.region}: run 'sensorpub aws register-device "
                     f"{args.device}' (or register the CA with --jitp) or the board will be refused")
    elif args.aws_root_ca:
        raise CommandError("--aws-root-ca is for --target aws")
    if args.certs_only:
        from .flash import flash_certs
        files = flash_certs(args.port, args.fleet, args.device, progress=_say, ca_der=ca_der, reset=not args.no_reset)
        print(f"replaced the credentials of {args.device} on {args.port}: {len(files)} files")
        return 0
    cfg = build_config(args.device, host, args.broker_port, args.interval, extra)
    files = flash(args.port, args.fleet, args.device, args.board, cfg, mpy=args.mpy, reset=not args.no_reset,
                  progress=_say, ca_der=ca_der)
    print(f"flashed {args.device} on {args.port} for {host}:{args.broker_port}: {len(files)} files")
    return 0


def argparse_console(sub):
    p = sub.add_parser("console", help="print a board's console (serial port or virtual board)",
                       epilog=EPILOGS["console"], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", required=True, help="serial port, or 'vboard' / 'vboard:NAME'")
    p.add_argument("-n", "--lines", type=int, default=20, help="virtual board: how many past lines (default: 20)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing (Ctrl-C to stop)")
    p.add_argument("--seconds", type=float, default=None, help="follow for this long, then exit")


def do_console(args):
    from .console import follow
    follow(args.port, args.lines, args.seconds if args.seconds else (None if args.follow else 0.01))
    return 0


COMMANDS = {
    "pki": (argparse_pki, do_pki),
    "broker": (argparse_broker, do_broker),
    "verify": (argparse_verify, do_verify),
    "aws": (argparse_aws, do_aws),
    "vboard": (argparse_vboard, do_vboard),
    "flash": (argparse_flash, do_flash),
    "console": (argparse_console, do_console),
}


def register(name, factory, handler):
    COMMANDS[name] = (factory, handler)


def build_parser():
    from . import __version__
    p = Parser(prog="sensorpub", description="ESP32 sensors publishing over MQTT with mutual TLS: host tools.")
    p.add_argument("--version", action="version", version=f"sensorpub {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, (factory, _h) in COMMANDS.items():
        factory(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args) or 0
    except CommandError as e:
        print(f"sensorpub: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("sensorpub: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line; SENSORPUB_DEBUG=1 shows the traceback
        if os.environ.get("SENSORPUB_DEBUG"):
            raise
        print(f"sensorpub: internal error: {type(e).__name__}: {e} (SENSORPUB_DEBUG=1 for details; please report)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
