# Bounded outbox on flash: a ring of fixed-size slots, so a reading survives link loss and reboots.
# The state file holds head, tail and the next seq; it is replaced by rename (atomic on LittleFS).
import os
from micropython import const

import log

SLOT = const(256)
_DATA = "/outbox.bin"
_STATE = "/outbox.st"


class Outbox:
    def __init__(self, slots, owner="", data=_DATA, state=_STATE):
        self.n = slots
        self.owner = owner  # the device_id whose readings these are
        self.data = data
        self.state = state
        self.buf = bytearray(SLOT)
        self.mv = memoryview(self.buf)
        self.head = self.tail = self.seq = 0
        self.dropped = 0
        try:
            with open(state) as f:
                v = f.read().split()
            h, t, s = int(v[0]), int(v[1]), int(v[2])
            was = v[3] if len(v) > 3 else owner  # state files before the owner was kept: assume this device
            if was != owner:  # re-flashed as another device: its readings must not go out under this name
                log.warn("outbox held %d readings of device '%s': discarded, seq starts at 0" % (t - h, was))
            elif 0 <= h <= t:
                self.head, self.tail, self.seq = h, t, s
        except (OSError, ValueError, IndexError):
            pass
        try:
            size = os.stat(data)[6]
        except OSError:
            size = 0
        if size != slots * SLOT:  # new, or the slot count changed (config): rebuild, keeping seq
            self._rebuild(size // SLOT)
        self.f = open(data, "r+b")
        self._save()

    def _rebuild(self, old):
        # a new data file of self.n slots; queued readings move over one slot at a time (RAM: one slot),
        # the newest first to stay when there are more than fit
        keep = min(self.tail - self.head, self.n) if old else 0
        if self.tail - self.head > keep:
            log.warn("outbox now %d slots: dropped the %d oldest readings" % (self.n, self.tail - self.head - keep))
        tmp = self.data + ".t"
        with open(tmp, "wb") as f:
            for _ in range(self.n):
                f.write(self.buf)
        if keep:
            with open(self.data, "rb") as src, open(tmp, "r+b") as dst:
                for i in range(self.tail - keep, self.tail):
                    src.seek((i % old) * SLOT)
                    src.readinto(self.buf)
                    dst.seek((i % self.n) * SLOT)
                    dst.write(self.buf)
        os.rename(tmp, self.data)
        self.head = self.tail - keep

    def __len__(self):
        return self.tail - self.head

    def _save(self):
        tmp = self.state + ".t"
        with open(tmp, "w") as f:
            f.write("%d %d %d %s" % (self.head, self.tail, self.seq, self.owner))
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
        # not through self.buf: a reading taken while the head is being sent must not overwrite it
        self.f.seek((self.tail % self.n) * SLOT)
        self.f.write(bytes((len(payload),)))  # SLOT <= 256 keeps one length byte enough
        self.f.write(payload)
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
