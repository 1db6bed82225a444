"""What is on the other end of the port: platform, chip, MicroPython release, free flash, and the
umqtt.simple the firmware build provides, told apart by behaviour, not by a version string.

`probe(dev)` runs one snippet on the board (through the one transport, `Device.exec`) and returns a
`BoardInfo`; `check(info, board)` says which board file fits and refuses what cannot work, in one line.
"""
import ast
from dataclasses import dataclass
from typing import Optional, Tuple

from .errors import CommandError
from .umqtt_versions import MIN_MICROPYTHON

# Runs on the board. The umqtt checks swap the module's socket global for one that raises at once, so
# connect() shows which arguments it takes and whether it closes an old socket, without any network.
SNIPPET = """
import sys, os
r = {'platform': sys.platform, 'version': tuple(sys.implementation.version[:3]),
     'machine': getattr(sys.implementation, '_machine', '')}
try:
    u = os.uname()
    r['uname_machine'] = u.machine
    r['release'] = u.release
except AttributeError:
    pass
s = os.statvfs('/')
r['free'] = s[0] * s[3]
try:
    from umqtt import simple as m
except ImportError:
    m = None
if m:
    class Stop(Exception):
        pass
    class Net:
        def socket(self, *a):
            raise Stop()
        def getaddrinfo(self, *a):
            raise Stop()
    class Old:
        closed = False
        def close(self):
            Old.closed = True
    keep = m.socket
    m.socket = Net()
    f = {'unsubscribe': hasattr(m.MQTTClient, 'unsubscribe')}
    c = m.MQTTClient('probe', '127.0.0.1')
    try:
        c.connect(timeout=1)
    except Stop:
        f['timeout'] = True
    except TypeError:
        f['timeout'] = False
    try:
        m.MQTTClient('probe', '127.0.0.1', ssl_params={})
        f['ssl_params'] = True
    except TypeError:
        f['ssl_params'] = False
    c.sock = Old()
    try:
        c.connect()
    except Stop:
        pass
    f['closes_old_sock'] = Old.closed
    m.socket = keep
    r['umqtt'] = f
else:
    r['umqtt'] = None
print(repr(r))
"""

CHIPS = (("ESP32S3", "esp32_s3"), ("ESP32C3", "esp32_c3"), ("ESP32", "esp32_generic"))  # most specific first


@dataclass
class BoardInfo:
    platform: str
    version: Tuple[int, int, int]
    machine: str
    free: int
    umqtt: Optional[dict]
    board: Optional[str]          # the board file that fits, or None if no board file does

    @property
    def umqtt_version(self) -> Optional[str]:
        """The umqtt.simple release whose behaviour this matches (1.7.1 behaves as 1.8.0)."""
        f = self.umqtt
        if f is None:
            return None
        if not f.get("timeout"):
            return "1.4.0"
        if not f.get("ssl_params"):
            return "1.5.0"
        if not f.get("unsubscribe"):
            return "1.6.0"
        return "1.8.0" if f.get("closes_old_sock") else "1.7.0"

    def describe(self) -> str:
        v = ".".join(map(str, self.version))
        u = f"umqtt.simple {self.umqtt_version}-compatible" if self.umqtt else "no umqtt.simple"
        return (f"{self.machine or self.platform}, MicroPython {v}, {self.free // 1024} KB flash free, {u}"
                f" -> board {self.board or '?'}")


def parse(out: str) -> BoardInfo:
    r = ast.literal_eval(out.strip().splitlines()[-1])
    machine = r.get("machine") or r.get("uname_machine") or ""
    board = None
    if r["platform"] == "esp32":
        up = machine.upper().replace("-", "")
        board = next((b for chip, b in CHIPS if chip in up), None)
    elif r["platform"] == "linux":
        board = "unix"
    return BoardInfo(r["platform"], tuple(r["version"]), machine, r["free"], r["umqtt"], board)


def probe(dev) -> BoardInfo:
    """Ask the board (a `transport.Device`) what it is."""
    return parse(dev.exec(SNIPPET, timeout=15))


def check(info: BoardInfo, board: Optional[str]) -> str:
    """The board file to flash: `board` if given and it fits, else the one inferred. One-line refusals."""
    v = ".".join(map(str, info.version))
    if info.board is None:
        raise CommandError(f"this board ({info.machine or info.platform}, MicroPython {v}) has no board file in "
                           "boards/: supported are ESP32, ESP32-S3 and ESP32-C3")
    if board and board != info.board:
        raise CommandError(f"--board {board} does not fit this board: it is {info.machine or info.platform} "
                           f"(board {info.board}); use --board {info.board} or leave --board out")
    if info.platform == "esp32" and info.version[:2] < MIN_MICROPYTHON:
        oldest = ".".join(map(str, MIN_MICROPYTHON))
        raise CommandError(f"MicroPython {v} on the board is older than {oldest}, the oldest supported: flash a "
                           f"current release with 'make flash-micropython' (see the README)")
    if info.umqtt is None:
        raise CommandError("the board's MicroPython has no umqtt.simple: flash a stock ESP32 build (1.23 or newer "
                           "freezes it), or install it with 'mpremote mip install umqtt.simple' (needs network)")
    return info.board
