# Under the Unix-port MicroPython: flash wear of the outbox, counted on a RAM block device formatted with
# LittleFS2 as an ESP32's is (4 KB blocks). Each reading is queued and acknowledged at once (steady state).
# argv: OUTBOX_DIR N [DEVICE_ID]; OUTBOX_DIR holds outbox.py (the firmware's, or an earlier one to compare) and
# log.py. Prints "RESULT {json}" with erases and bytes programmed per reading.
import json
import sys
import vfs

sys.path.insert(0, sys.argv[1])
N = int(sys.argv[2])
DEV = sys.argv[3] if len(sys.argv) > 3 else "dev1"
BS, BLOCKS = 4096, 128


class RamFlash:
    def __init__(self):
        self.mem = bytearray(b"\xff" * (BS * BLOCKS))
        self.erases = self.programmed = 0

    def readblocks(self, b, buf, off=0):
        a = b * BS + off
        buf[:] = self.mem[a:a + len(buf)]

    def writeblocks(self, b, buf, off=None):
        if off is None:  # a whole-block write: erase, then program
            self.erases += 1
            off = 0
        a = b * BS + off
        self.mem[a:a + len(buf)] = buf
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return BLOCKS
        if op == 5:
            return BS
        if op == 6:  # erase one block
            self.erases += 1
            a = arg * BS
            self.mem[a:a + BS] = b"\xff" * BS
            return 0
        return 0


flash = RamFlash()
vfs.VfsLfs2.mkfs(flash)
vfs.mount(vfs.VfsLfs2(flash), "/w")
import outbox

if hasattr(outbox, "_STATE"):  # the ring file of earlier firmware: (slots, owner, data, state)
    box = outbox.Outbox(240, DEV, "/w/outbox.bin", "/w/outbox.st")
else:
    box = outbox.Outbox(240, DEV, "/w/outbox", ("/w/outbox.bin", "/w/outbox.st"))


def reading():  # what the firmware sends from a DHT22 board with network time
    return (b'{"device_id":"%s","seq":%d,"ts":1795459200.123,"uptime_s":1260,"status":"ok","temp_c":21.4,'
            b'"humidity_pct":48.0}' % (DEV.encode(), box.next_seq()))


for _ in range(20):  # warm up: files exist, metadata settled
    box.put(reading())
    box.peek()
    box.pop()
e0, p0 = flash.erases, flash.programmed
for _ in range(N):  # steady state: each reading acknowledged at once
    box.put(reading())
    box.peek()
    box.pop()
print("RESULT", json.dumps({"readings": N, "bytes": len(reading()), "erases_per_reading": (flash.erases - e0) / N,
                            "bytes_programmed_per_reading": (flash.programmed - p0) // N}))
