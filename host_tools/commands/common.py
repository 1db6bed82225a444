"""What the command modules share: the one-line argparse parser, progress on stderr, common flags."""
import argparse
import sys
from typing import Dict, Iterable, Tuple


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + line
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def say(msg: str) -> None:
    """Progress and notes: stderr, so stdout stays what scripts read."""
    print(msg, file=sys.stderr, flush=True)


def command(sub, name: str, helptext: str, epilog: str = "") -> argparse.ArgumentParser:
    return sub.add_parser(name, help=helptext, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def actions(p: argparse.ArgumentParser, table: Iterable[Tuple[str, str]]) -> Dict[str, argparse.ArgumentParser]:
    """Sub-actions (`pki init`, `broker start`, ...): {name: parser}, each with its help as description."""
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    return {name: s.add_parser(name, help=h, description=h) for name, h in table}


def add_fleet(p) -> None:
    from ..paths import DEFAULT_FLEET
    p.add_argument("--fleet", default=DEFAULT_FLEET, help=f"fleet name (default: {DEFAULT_FLEET})")


def add_verifier_connection(p, when: str = "") -> None:
    """--host, --port, --as: a short connection to the fleet's broker as a verifier identity (status, config).
    `when`: what the help texts start with (e.g. 'no store: ')."""
    from ..contract import DEFAULT_PORT
    p.add_argument("--host", help=f"{when}broker host (default: localhost)")
    p.add_argument("--port", type=int, help=f"{when}broker port (default: the port the fleet's broker was last "
                                            f"started on, else {DEFAULT_PORT})")
    p.add_argument("--as", dest="identity", default="", metavar="NAME",
                   help=f"{when}connect as verifier identity NAME ('sensorpub pki verifier --name NAME'), so a "
                        "verify or bridge running with the default identity is not disconnected")


def verifier_endpoint(args):
    """(Endpoint, target) for add_verifier_connection's flags and --fleet: a clean session with its own client id."""
    import os

    from .. import target
    from ..errors import CommandError
    from ..fleet import Fleet
    from ..verify import Endpoint
    v = Fleet(args.fleet).verifier_identity_dir(args.identity)
    if not (v / "verifier.pem").exists() and args.identity:
        raise CommandError(f"no verifier identity {args.identity!r} in fleet {args.fleet!r}: "
                           f"run 'sensorpub pki verifier --name {args.identity}' first")
    t = target.resolve(args.fleet, "local", args.host, args.port)
    return Endpoint(t.host, t.port, t.ca_file, v / "verifier.pem", v / "verifier.key.pem",
                    client_id=f"sensorpub-verifier-{os.getpid()}"), t


def add_aws_flags(p, root_ca: bool = False) -> None:
    p.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / the profile's)")
    p.add_argument("--profile", help="AWS profile from ~/.aws (default: AWS_PROFILE or 'default')")
    if root_ca:
        p.add_argument("--aws-root-ca", metavar="FILE",
                       help="CA that signs the server certificate (default: Amazon Root CA 1, shipped in "
                            "host_tools/data/AmazonRootCA1.pem)")


def aws_account(args):
    """The fleet in the AWS account and region that --region/--profile (or the environment) name."""
    from ..aws import Aws, session_client
    return Aws(args.fleet, session_client(args.region, args.profile), progress=say,
               clients=lambda service, region: session_client(region, args.profile, service))
