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
