# Under the Unix-port MicroPython: the flash outbox across resizes and a change of identity.
# argv: FIRMWARE_DIR WORK_DIR; prints one JSON object of what each step saw.
import sys
import json

fw, work = sys.argv[1], sys.argv[2]
sys.path.insert(0, fw)
from outbox import Outbox

D, S = work + "/outbox.bin", work + "/outbox.st"
out = {}


def drain(box):
    got = []
    while True:
        m = box.peek()
        if m is None:
            return got
        got.append(json.loads(bytes(m))["seq"])
        box.pop()


b = Outbox(8, "dev1", D, S)
for _ in range(6):
    b.put(b'{"seq":%d}' % b.next_seq())
b.pop()  # seq 0 acknowledged; 1..5 queued
b.f.close()
b = Outbox(3, "dev1", D, S)  # shrunk below what is queued: the newest stay
out["shrunk"] = [len(b), b.next_seq()]
b.f.close()
b = Outbox(10, "dev1", D, S)  # grown: all kept
out["grown"] = [drain(b), b.next_seq()]
b.put(b'{"seq":%d}' % b.next_seq())
b.f.close()
with open(S) as f:
    h, t, s = f.read().split()[:3]
with open(S, "w") as f:
    f.write("%s %s %s" % (h, t, s))  # a state file from before the owner was kept
b = Outbox(10, "dev1", D, S)
out["old_format"] = [len(b), b.next_seq()]
b.f.close()
b = Outbox(10, "dev2", D, S)  # re-flashed as another device
out["other_owner"] = [len(b), b.next_seq(), drain(b)]
print(json.dumps(out))
