# Under the Unix-port MicroPython: the flash outbox across reboots, resizes, a change of identity, a power
# cut mid-write and the ring-file layout of earlier firmware. argv: FIRMWARE_DIR WORK_DIR; prints one JSON
# object of what each step saw.
import sys
import json

fw, work = sys.argv[1], sys.argv[2]
sys.path.insert(0, fw)
from outbox import SLOT, Outbox

D = work + "/outbox"
OLD = (work + "/outbox.bin", work + "/outbox.st")
out = {}


def reading(dev, seq):
    return b'{"device_id":"%s","seq":%d,"temp_c":21.5}' % (dev.encode(), seq)


def drain(box):
    got = []
    while True:
        m = box.peek()
        if m is None:
            return got
        got.append(json.loads(bytes(m))["seq"])
        box.pop()


b = Outbox(8, "dev1", D, OLD)
for _ in range(6):
    b.put(reading("dev1", b.next_seq()))
b.pop()  # seq 0 acknowledged; 1..5 queued
out["whole"] = json.loads(bytes(Outbox(8, "dev1", D, OLD).peek()))  # stored without its device_id, read back whole
b = Outbox(3, "dev1", D, OLD)  # shrunk below what is queued: the newest stay
out["shrunk"] = [len(b), b.next_seq()]
b = Outbox(10, "dev1", D, OLD)  # grown: all kept
out["grown"] = [drain(b), b.next_seq()]
out["empty_reboot"] = Outbox(10, "dev1", D, OLD).next_seq()  # nothing queued: seq still goes on
b = Outbox(10, "dev1", D, OLD)
b.put(b'{"not":"prefixed"}')  # a payload without the device prefix is kept as it is
out["raw"] = bytes(b.peek()).decode()
b.pop()
open(D + "/q%d" % b.next_seq(), "wb").close()  # the power went while a reading was being written
b = Outbox(10, "dev1", D, OLD)
out["cut_mid_write"] = [len(b), b.next_seq()]
b.put(reading("dev1", b.next_seq()))
b = Outbox(10, "dev2", D, OLD)  # re-flashed as another device
out["other_owner"] = [len(b), b.next_seq(), drain(b)]

# the ring file of earlier firmware: 4 slots, readings 7 and 8 queued (head 5, tail 7), owner dev3
import os
for n in os.listdir(D):
    os.remove(D + "/" + n)
ring = bytearray(b"\xff" * (4 * SLOT))
for i, seq in ((5, 7), (6, 8)):
    p = reading("dev3", seq)
    ring[(i % 4) * SLOT] = len(p)
    ring[(i % 4) * SLOT + 1:(i % 4) * SLOT + 1 + len(p)] = p
with open(OLD[0], "wb") as f:
    f.write(ring)
with open(OLD[1], "w") as f:
    f.write("5 7 9 dev3")
b = Outbox(10, "dev3", D, OLD)
out["migrated"] = [drain(b), b.next_seq(), [p.rsplit("/", 1)[1] in os.listdir(work) for p in OLD]]
print(json.dumps(out))
