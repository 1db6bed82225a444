"""`sensorpub vboard`, `flash` and `console`: virtual boards, putting firmware and identity on a board, its console."""
import json
import os

from ..contract import DEFAULT_PORT
from ..errors import CommandError
from .common import actions, add_aws_flags, add_fleet, aws_account, command, say

VBOARD_EPILOG = """examples:
  sensorpub vboard start                 # prints the pty to give to mpremote
  sensorpub vboard start --heapsize 64k --erase
  sensorpub vboard start --name esp --board esp32_generic --micropython 1.24 --erase
  sensorpub vboard hw --name esp wifi.up=false      # the access point goes away
  sensorpub vboard hw --name esp dht22.fault=timeout
  sensorpub vboard power-cut --name esp               # mid-write, mid-publish: nothing may be lost
  sensorpub vboard status
  mpremote connect $(sensorpub vboard port) fs ls
  sensorpub vboard stop
  sensorpub vboard start --fleet site1   # fleet site1's own board, site1-vb0 (the default fleet's is vb0)
  sensorpub flash --fleet site1 --port vboard --device dev1   # --port vboard is then site1-vb0, as in console"""

FLASH_EPILOG = """examples:
  sensorpub flash --port vboard --device dev1 --interval 2   # --board inferred
  sensorpub flash --port /dev/ttyUSB0 --device dev1 --board esp32_generic \\
      --broker-host 192.168.1.10 --wifi-ssid home --mpy   # Wi-Fi password from $SENSORPUB_WIFI_PASSWORD
  sensorpub flash --target aws --region eu-west-1 --port /dev/ttyUSB0 --device dev1 --board esp32_generic \\
      --wifi-ssid home
  sensorpub flash --certs-only --port /dev/ttyUSB0 --device dev1   # after 'sensorpub pki renew dev1'
  sensorpub flash --fleet site1 --port vboard --device dev1   # fleet site1's board (vboard start --fleet site1)"""

CONSOLE_EPILOG = """examples:
  sensorpub console --port vboard -f
  sensorpub console --port /dev/ttyUSB0 -f
  sensorpub console --port vboard -n 200 --raw   # with mpremote's raw REPL traffic
  sensorpub console --fleet site1 --port vboard -f   # fleet site1's board (vboard start --fleet site1)
  sensorpub console --port vboard:dev007 -f     # a board of 'sensorpub fleet up' (named after its device)"""

VBOARD_ACTIONS = (("start", "start it; prints the pty path"), ("stop", "stop it (the flash image stays)"),
                  ("status", "is it running, on which pty"), ("port", "print the pty path only"),
                  ("hw", "an emulated ESP32's hardware: show it (JSON), or script faults with KEY=VALUE"),
                  ("power-cut", "cut the power at whatever the board is doing; it boots again (power-on)"))


def argparse_vboard(sub):
    p = command(sub, "vboard", "a virtual board: Unix-port MicroPython on a pty that mpremote talks to", VBOARD_EPILOG)
    for name, a in actions(p, VBOARD_ACTIONS).items():
        add_fleet(a)
        a.add_argument("--name", help="which virtual board (default: the fleet's own: vb0 for the default fleet, "
                                      "FLEET-vb0 for another)")
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
            a.add_argument("--heapsize", help="MicroPython heap (default: 100k; an emulated ESP32: sized from the "
                                              "board's, see host_tools/vboard/profiles.py)")
            a.add_argument("--flash-kb", type=int, default=2048, help="LittleFS flash size in KB (default: 2048)")
            a.add_argument("--erase", action="store_true", help="start with an erased flash")


def do_vboard(args):
    from ..fleet_boards import default_board
    from ..vboard import VBoard
    args.name = args.name or default_board(args.fleet)
    vb = VBoard(args.name)
    if args.action == "start":
        st = vb.start(args.heapsize, args.flash_kb, args.erase, board=args.board, micropython=args.micropython,
                      umqtt=args.umqtt)
        print(st["pty"])
        mp = f", MicroPython {st['micropython']}" if st.get("micropython") else ""
        say(f"virtual board {args.name!r} running: {args.board}{mp}, {st['umqtt']}, heap {st['heapsize']}, "
            f"flash {args.flash_kb} KB; console: sensorpub console --port vboard:{args.name} -f")
    elif args.action == "stop":
        print("stopped" if vb.stop() else f"virtual board {args.name!r} was not running")
    elif args.action == "port":
        print(vb.port)
    elif args.action == "power-cut":
        vb.power_cut()
        print(f"power cut on virtual board {args.name!r}: it boots again with reset cause power-on")
    elif args.action == "hw":
        from ..vboard import hw
        if not (vb.rom / "hw.json").exists():
            raise CommandError(f"virtual board {args.name!r} is not an emulated ESP32: "
                               "'sensorpub vboard start --board esp32_generic' first")
        state = hw.update(vb.rom, hw.parse_faults(args.set)) if args.set else hw.read(vb.rom)
        print(json.dumps(state, indent=1, sort_keys=True))
    else:
        st = vb.state()
        print(f"running on {st['pty']} (pid {st['pid']}, heap {st['heapsize']}, console {vb.console_log})"
              if st else "not running")
        if not st:
            from ..fleet_run import members
            ups = members(args.fleet)
            if ups:  # the fleet's boards are 'fleet up' ones: say where to look
                say(f"fleet {args.fleet!r} has {len(ups)} boards from 'fleet up': 'sensorpub fleet status --fleet "
                    f"{args.fleet}'")
        return 0 if st else 3
    return 0


def argparse_flash(sub):
    p = command(sub, "flash", "copy firmware, board file, credentials and config to a board", FLASH_EPILOG)
    add_fleet(p)
    p.add_argument("--port", required=True, help="serial port, or 'vboard' (the fleet's own virtual board) / "
                                                 "'vboard:NAME' for a virtual board")
    p.add_argument("--device", required=True, help="device identity to install (from 'sensorpub pki device')")
    p.add_argument("--board", help="board file from boards/ (unix, esp32_generic, esp32_s3, esp32_c3); default: the one "
                                   "that fits what the board reports (a mismatch is refused)")
    p.add_argument("--target", choices=("local", "aws"), default="local",
                   help="local Mosquitto (default) or AWS IoT Core: endpoint, Amazon Root CA 1, client id = thing name")
    p.add_argument("--broker-host", help="broker host as the board sees it (default: localhost; with --target aws "
                                         "the account's ATS endpoint)")
    p.add_argument("--broker-port", type=int, help="broker port (default: the port the fleet's broker was last "
                                                   f"started on, else {DEFAULT_PORT})")
    p.add_argument("--interval", type=int, default=30, help="seconds between readings (default: 30)")
    p.add_argument("--wifi-ssid", default="", help="Wi-Fi network (ESP32 boards)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config.json key, e.g. --set sensor=ds18b20 --set sensor_pin=15")
    add_aws_flags(p, root_ca=True)
    p.add_argument("--mpy", action="store_true", help="precompile the firmware with mpy-cross")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    p.add_argument("--certs-only", action="store_true",
                   help="replace only the certificate and key files (after 'sensorpub pki renew'); the board "
                        "must already be flashed as --device")


def do_flash(args):
    from .. import target
    from ..flash import build_config, flash, flash_certs, parse_sets
    from ..fleet_boards import board_port
    port = board_port(args.port, args.fleet)  # a bare 'vboard' is the fleet's own board
    extra = parse_sets(args.set)
    if args.wifi_ssid:
        extra["wifi_ssid"] = args.wifi_ssid
    if os.environ.get("SENSORPUB_WIFI_PASSWORD"):  # from the environment, so it stays out of shell history
        extra["wifi_password"] = os.environ["SENSORPUB_WIFI_PASSWORD"]
    if args.target == "aws":
        from ..aws import TOPIC_PREFIX
        target.check_aws_config(args.device, extra, TOPIC_PREFIX)
    t = target.resolve(args.fleet, args.target, args.broker_host, args.broker_port, aws_root_ca=args.aws_root_ca,
                       account=lambda: aws_account(args))
    if t.account is not None and not t.account.is_registered(args.device):  # type: ignore[attr-defined]
        say(f"warning: {args.device} is not registered in {t.account.region}: run "  # type: ignore[attr-defined]
            f"'sensorpub aws register-device {args.device}' (or register the CA with --jitp) or the board will be refused")
    if args.certs_only:
        files = flash_certs(port, args.fleet, args.device, progress=say, ca_der=t.ca_der(), reset=not args.no_reset)
        print(f"replaced the credentials of {args.device} on {port}: {len(files)} files")
        return 0
    cfg = build_config(args.device, t.host, t.port, args.interval, extra)
    files = flash(port, args.fleet, args.device, args.board, cfg, mpy=args.mpy, reset=not args.no_reset,
                  progress=say, ca_der=t.ca_der())
    print(f"flashed {args.device} on {port} for {t.host}:{t.port}: {len(files)} files")
    return 0


def argparse_console(sub):
    p = command(sub, "console", "print a board's console (serial port or virtual board)", CONSOLE_EPILOG)
    add_fleet(p)
    p.add_argument("--port", required=True, help="serial port, or 'vboard' (the fleet's own virtual board) / "
                                                 "'vboard:NAME'")
    p.add_argument("-n", "--lines", type=int, default=20, help="virtual board: how many past lines (default: 20)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing (Ctrl-C to stop)")
    p.add_argument("--seconds", type=float, default=None, help="follow for this long, then exit")
    p.add_argument("--raw", action="store_true", help="show every byte, mpremote's raw REPL traffic included "
                                                     "(hidden by default behind one line)")


def do_console(args):
    from ..console import follow
    from ..fleet_boards import console_port
    port = console_port(args.port, args.fleet)  # a bare 'vboard' is the fleet's own board
    follow(port, args.lines, args.seconds if args.seconds else (None if args.follow else 0.01), raw=args.raw)
    return 0
