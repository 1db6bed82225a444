# Bounded outbox on flash: a ring of fixed-size slots, so a reading survives link loss and reboots.
# The state file holds head, tail and the next seq; it is replaced by rename (atomic on LittleFS).
import os
from micropython import const

SLOT = const(256)
_DATA = "/outbox.bin"
_STATE = "/outbox.st"


class Outbox:
    def __init__(self, slots, data=_DATA, state=_STATE):
        self.n = slots
        self.data = data
        self.state = state
        self.buf = bytearray(SLOT)
        self.mv = memoryview(self.buf)
        self.head = self.tail = self.seq = 0
        self.dropped = 0
        try:
            with open(state) as f:
                h, t, s = [int(x) for x in f.read().split()]
            if 0 <= h <= t and t - h <= slots:
                self.head, self.tail, self.seq = h, t, s
        except (OSError, ValueError):
            pass
        try:
            if os.stat(data)[6] != slots * SLOT:
                raise OSError
        except OSError:  # new, or slot count changed: start empty, keep seq
            with open(data, "wb") as f:
                for _ in range(slots):
                    f.write(self.buf)
            self.head = self.tail
        self.f = open(data, "r+b")

    def __len__(self):
        return self.tail - self.head

    def _save(self):
        tmp = self.state + ".t"
        with open(tmp, "w") as f:
            f.write("%d %d %d" % (self.head, self.tail, self.seq))
        os.rename(tmp, self.state)

    def next_seq(self):
        return self.seq

    def put(self, payload):
        # payload: bytes of at most SLOT-1; returns False if the oldest reading had to go
        ok = True
        if self.tail - self.head >= self.n:
            self.head += 1
            self.dropped += 1
            ok = False
        self.buf[0] = len(payload)  # SLOT <= 256 keeps one length byte enough
        self.mv[1:1 + len(payload)] = payload
        self.f.seek((self.tail % self.n) * SLOT)
        self.f.write(self.buf)
        self.f.flush()
        self.tail += 1
        self.seq += 1
        self._save()
        return ok

    def peek(self):
        # memoryview of the oldest reading (valid until the next peek/put), or None
        if self.tail == self.head:
            return None
        self.f.seek((self.head % self.n) * SLOT)
        self.f.readinto(self.buf)
        return self.mv[1:1 + self.buf[0]]

    def pop(self):
        if self.tail > self.head:
            self.head += 1
            self._save()
