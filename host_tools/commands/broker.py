"""`sensorpub broker`: the fleet's local Mosquitto with mutual TLS."""
import time

from ..contract import DEFAULT_PORT
from ..errors import CommandError
from .common import actions, add_fleet, command, say

EPILOG = """examples:
  sensorpub broker start --port 8883
  sensorpub broker status
  sensorpub broker start --port 8884 --aws-policy --server-fleet amazon-standin   # AWS rehearsal
  sensorpub broker logs -n 20
  sensorpub broker stop"""

ACTIONS = (("start", "write the config and start mosquitto, wait until TLS is up"),
           ("stop", "stop the fleet's mosquitto"), ("status", "is it running, where"),
           ("logs", "print the end of the broker log"))


def argparse_broker(sub):
    p = command(sub, "broker", "run a local Mosquitto with mutual TLS for a fleet", EPILOG)
    for name, a in actions(p, ACTIONS).items():
        add_fleet(a)
        if name == "start":
            a.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TLS port (default: {DEFAULT_PORT})")
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
    from ..broker import Broker
    if args.action != "start":
        b = Broker(args.fleet)
    else:
        from ..aws import standin_acl
        if not 0 < args.port < 65536:
            raise CommandError(f"--port {args.port} is not a TCP port: give 1-65535")
        b = Broker(args.fleet, port=args.port, bind=args.bind, server_fleet=args.server_fleet or "",
                   acl=standin_acl() if args.aws_policy else None, bind_client_id=not args.aws_policy)
        pid = b.start(progress=say)
        for note in b.notes:
            say(note)
        print(f"broker for fleet {args.fleet!r} up on {args.bind}:{args.port} (pid {pid}, log {b.log_file})")
    if args.action == "stop":
        print("stopped" if b.stop() else f"the broker for fleet {args.fleet!r} was not running")
    elif args.action == "status":
        pid = b.pid()
        lst = b.listener()
        where = f"{lst[0]} {lst[1]}" if lst else "?"
        print(f"running (pid {pid}, listener {where}, log {b.log_file})" if pid else "not running")
        return 0 if pid else 3
    elif args.action == "logs":
        tail(b.log_file, args.lines, args.follow)
    return 0


def tail(path, lines: int, follow: bool) -> None:
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
