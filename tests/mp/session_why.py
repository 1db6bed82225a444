# Under the Unix-port MicroPython: the one-line reasons reasons.why() gives for the link failures users
# meet most, printed as JSON lines. argv: FIRMWARE_DIR UMQTT_DIR
import errno
import json
import sys

sys.path[:0] = [sys.argv[1], sys.argv[2]]
import reasons

out = {}
out["refused"] = reasons.why(OSError(errno.ECONNREFUSED))
out["dns"] = reasons.why(OSError(-202))
out["alloc"] = reasons.why(OSError(-0x7F00))
out["enomem"] = reasons.why(OSError(errno.ENOMEM))
out["untrusted"] = reasons.why(OSError(-0x2700))
reasons._clock_unset = lambda: True  # an ESP32 before NTP: same code, other cause
out["untrusted_no_clock"] = reasons.why(OSError(-0x2700))
print("RESULT", json.dumps(out))
