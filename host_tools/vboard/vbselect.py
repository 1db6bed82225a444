# `select` for the virtual board (MicroPython): the Unix port's own, except that a poll() waiting on TLS
# sockets sleeps in the host's poll() on the TCP sockets under them until bytes arrive or it times out.
# The Unix port cannot wait on an object without a file descriptor: its poll() asks a TLS socket again
# every millisecond (about 1,000 wake-ups a second while a firmware idles), where an ESP32 waits for the
# network task. What poll() returns is always the Unix port's own answer, asked after the wait.
import select as _s
import time as _t
import vbssl


class _Poll:
    def __init__(self):
        self.p = _s.poll()
        self.raw = _s.poll()
        self.ok = True  # every object registered is a TLS socket vbssl wrapped: self.raw can wait for it

    def register(self, obj, mask=_s.POLLIN | _s.POLLOUT):
        self.p.register(obj, mask)
        for s, tcp in vbssl.RAW:
            if s is obj:
                self.raw.register(tcp, mask)
                return
        self.ok = False

    def __getattr__(self, name):  # modify, unregister, ipoll: the Unix port's own from now on
        self.ok = False
        return getattr(self.p, name)

    def poll(self, timeout=-1):
        ready = self.p.poll(0)
        if ready or not timeout:
            return ready
        if not self.ok:
            return self.p.poll(timeout)
        end = _t.ticks_add(_t.ticks_ms(), timeout) if timeout > 0 else None
        while True:
            self.raw.poll(-1 if end is None else max(0, _t.ticks_diff(end, _t.ticks_ms())))  # Ctrl-C ends it
            ready = self.p.poll(0)
            if ready or (end is not None and _t.ticks_diff(end, _t.ticks_ms()) <= 0):
                return ready


def poll():
    return _Poll()


def __getattr__(name):
    return getattr(_s, name)
