"""`sensorpub` command line: one table of subcommands, each an argparse factory and a do_<name> handler
(host_tools/commands/), as mpremote keeps its commands.

Handlers stay thin; the work is in library functions the tests call directly. Any CommandError
becomes one line on stderr and its exit status (1 unless it says); argparse mistakes are one line
and exit status 2; a bug is one line and 70 (SENSORPUB_DEBUG=1 shows the traceback).
"""
import os
import sys

from .commands.aws import argparse_aws, do_aws
from .commands.board import argparse_console, argparse_flash, argparse_vboard, do_console, do_flash, do_vboard
from .commands.bridge import argparse_bridge, do_bridge
from .commands.broker import argparse_broker, do_broker
from .commands.config import argparse_config, do_config
from .commands.common import Parser
from .commands.fleet import argparse_fleet, do_fleet
from .commands.pki import argparse_pki, do_pki
from .commands.report import argparse_report, do_report
from .commands.status import argparse_status, do_status
from .commands.verify import argparse_verify, do_verify
from .errors import CommandError

COMMANDS = {
    "pki": (argparse_pki, do_pki),
    "broker": (argparse_broker, do_broker),
    "verify": (argparse_verify, do_verify),
    "aws": (argparse_aws, do_aws),
    "vboard": (argparse_vboard, do_vboard),
    "flash": (argparse_flash, do_flash),
    "console": (argparse_console, do_console),
    "fleet": (argparse_fleet, do_fleet),
    "bridge": (argparse_bridge, do_bridge),
    "status": (argparse_status, do_status),
    "report": (argparse_report, do_report),
    "config": (argparse_config, do_config),
}


def build_parser() -> Parser:
    from . import __version__
    p = Parser(prog="sensorpub", description="ESP32 sensors publishing over MQTT with mutual TLS: host tools.")
    p.add_argument("--version", action="version", version=f"sensorpub {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for factory, _handler in COMMANDS.values():
        factory(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args) or 0
    except CommandError as e:
        print(f"sensorpub: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("sensorpub: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sensorpub ... | head` closed the pipe: nothing more to say, and no one to say it to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail again
        return 141
    except Exception as e:  # a bug: still one line; SENSORPUB_DEBUG=1 shows the traceback
        if os.environ.get("SENSORPUB_DEBUG"):
            raise
        print(f"sensorpub: internal error: {type(e).__name__}: {e} (SENSORPUB_DEBUG=1 for details; please report)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
