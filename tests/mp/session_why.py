# Under the Unix-port MicroPython: the one-line reasons session.why() gives for the link failures users
# meet most, printed as JSON lines. argv: FIRMWARE_DIR UMQTT_DIR
import errno
import json
import sys

sys.path[:0] = [sys.argv[1], sys.argv[2]]
import session

out = {}
out["refused"] = session.why(OSError(errno.ECONNREFUSED))
out["dns"] = session.why(OSError(-202))
out["alloc"] = session.why(OSError(-0x7F00))
out["enomem"] = session.why(OSError(errno.ENOMEM))
out["untrusted"] = session.why(OSError(-0x2700))
session._clock_unset = lambda: True  # an ESP32 before NTP: same code, other cause
out["untrusted_no_clock"] = session.why(OSError(-0x2700))
print("RESULT", json.dumps(out))
