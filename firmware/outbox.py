# Bounded outbox on flash, one small file per queued reading in /outbox.q: q<seq> queued, "a" the last one
# acknowledged (its seq survives a reboot with nothing queued), "owner" the device it belongs to.
# Every put, acknowledgement and drop is one LittleFS operation, atomic on a power cut. A file of up to
# ~128 bytes lives inline in the directory's metadata log, so a reading costs no block rewrite: a block is
# erased only when that log is compacted (0.1 erases a reading instead of 9.5 with a ring file rewritten
# in place; `make bench`). To stay inline, a reading '{"device_id":"<id>","seq":N,...' is stored as
# b'\0"seq":N,...' (its constant prefix left out); any other payload as b'\1N\n' + payload.
import os
from micropython import const

import log

SLOT = const(256)  # the largest reading, bytes
_DIR = "/outbox.q"  # not "/outbox": a folder of that name would shadow outbox.py on import
_OLD = ("/outbox.bin", "/outbox.st")  # the ring-file layout of earlier firmware, migrated once


def d_a(d):
    return d + "/a"


def _num(name):
    try:
        return int(name[1:])
    except ValueError:
        return -1


class Outbox:
    def __init__(self, slots, owner="", d=_DIR, old=_OLD):
        self.n = slots
        self.owner = owner
        self.d = d
        self.pre = ('{"device_id":"%s",' % owner).encode()  # contract.READING_FIELDS starts device_id, seq
        self.off = len(self.pre) - 1  # a stripped reading is read in here, behind a 0 marker byte
        self.buf = bytearray(SLOT + self.off + 16)  # room for the longest header (b"\1N\n")
        self.mv = memoryview(self.buf)
        try:
            os.mkdir(d)
        except OSError:
            pass
        try:
            with open(d + "/owner") as f:
                was = f.read()
        except OSError:
            was = None
        q = []
        for name in os.listdir(d):
            k = _num(name)
            if name[0] == "q" and k >= 0:
                if os.stat(d + "/" + name)[6]:
                    q.append(k)
                else:  # the power went while it was written: never sent, its seq is free again
                    os.remove(d + "/" + name)
        acked = self._acked()
        if was is not None and was != owner:  # re-flashed as another device: its readings must not go out
            log.warn("outbox held %d readings of device '%s': discarded, seq starts at 0" % (len(q), was))
            for name in os.listdir(d):
                os.remove(d + "/" + name)
            q, acked = [], -1
        if was != owner:
            with open(d + "/owner", "w") as f:
                f.write(owner)
        q.sort()
        self.head = q[0] if q else acked + 1
        self.tail = (q[-1] + 1) if q else acked + 1
        self._migrate(old)
        if len(self) > self.n:  # the slot count shrank (config): the newest stay
            log.warn("outbox now %d slots: dropped the %d oldest readings" % (self.n, len(self) - self.n))
            while len(self) > self.n:
                self._drop()

    def _migrate(self, old):
        # readings queued in the ring file of earlier firmware move over, seq included
        data, state = old
        try:
            with open(state) as f:
                v = f.read().split()
        except OSError:
            return
        try:
            h, t, s = int(v[0]), int(v[1]), int(v[2])
            was = v[3] if len(v) > 3 else self.owner
            if was != self.owner and t > h:
                log.warn("outbox held %d readings of device '%s': discarded, seq starts at 0" % (t - h, was))
            if was == self.owner and not len(self) and 0 <= h <= t:
                slots = os.stat(data)[6] // SLOT
                self.head = self.tail = s - (t - h)
                with open(data, "rb") as src:
                    for i in range(h, t):
                        src.seek((i % slots) * SLOT)
                        src.readinto(self.buf)
                        self.put(bytes(self.mv[1:1 + self.buf[0]]))
                if not t - h and s:  # nothing queued: remember where seq stands
                    with open(d_a(self.d), "wb") as f:
                        f.write(b"\1%d\n" % (s - 1))
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            pass
        for p in old:
            try:
                os.remove(p)
            except OSError:
                pass

    def _acked(self):
        # the seq of the last acknowledged reading, from the head of the "a" file (-1 without one)
        try:
            with open(d_a(self.d), "rb") as f:
                n = f.readinto(self.buf)
        except OSError:
            return -1
        i = 7 if n and self.buf[0] == 0 else 1  # after b'\0"seq":' or b'\1'
        j = i
        while j < n and 48 <= self.buf[j] <= 57:
            j += 1
        return int(bytes(self.mv[i:j])) if j > i else -1

    def _path(self, kind, k):
        return "%s/%s%d" % (self.d, kind, k)

    def _drop(self):
        try:
            os.remove(self._path("q", self.head))
        except OSError:
            pass
        self.head += 1

    def __len__(self):
        return self.tail - self.head

    @property
    def seq(self):
        return self.tail

    def next_seq(self):
        return self.tail

    def put(self, payload):
        # payload: bytes of at most SLOT; returns False if the oldest reading had to go
        ok = True
        if len(self) >= self.n:
            self._drop()
            ok = False
        with open(self._path("q", self.tail), "wb") as f:
            seq = b'"seq":%d,' % self.tail
            p = len(self.pre)
            if payload[:p] == self.pre and payload[p:p + len(seq)] == seq:
                f.write(b"\0")
                f.write(memoryview(payload)[p:])
            else:
                f.write(b"\1%d\n" % self.tail)
                f.write(payload)
        self.tail += 1
        return ok

    def peek(self):
        # memoryview of the oldest reading (valid until the next peek), or None
        while self.head < self.tail:
            try:
                with open(self._path("q", self.head), "rb") as f:
                    n = f.readinto(self.mv[self.off:])
            except OSError:  # gone (the power went between two steps of a drop): skip it
                self.head += 1
                continue
            if self.buf[self.off] == 0:
                self.mv[:len(self.pre)] = self.pre
                return self.mv[:self.off + n]
            i = self.off
            while self.buf[i] != 10:  # b'\1N\n' + payload
                i += 1
            return self.mv[i + 1:self.off + n]
        return None

    def pop(self):
        if self.tail > self.head:
            # one atomic step: acknowledged, and its seq remembered (it replaces the previous "a")
            os.rename(self._path("q", self.head), d_a(self.d))
            self.head += 1
