# The link under umqtt.simple: the socket module it connects with (_Net: every socket has a timeout from
# birth), the TLS wrapper it calls (_Tls), and the socket it then talks to (_Link: reads with a timeout,
# writes coalesced into one TLS record per MQTT packet). Kept apart from session.py so each module compiles
# in a small heap (a board given .py sources compiles them itself).
import errno
import select
import socket
import time

from micropython import const

if False:  # for the type checker only; costs nothing on the board
    from typing import Any

ETIMEDOUT = errno.ETIMEDOUT  # 116 on an ESP32 (newlib), 110 on Linux
_WBUF = const(512)
_NODELAY = (getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1))  # lwIP and Linux agree



class Link:
    # The socket umqtt.simple talks to (returned by Tls.wrap_socket). Reads get a timeout via poll
    # (SSLSocket has no settimeout, and wait_msg resets blocking mode), so a silent broker raises
    # ETIMEDOUT instead of hanging. Writes are buffered until the next read, flush() or close(), so each
    # MQTT packet leaves as one TLS record. umqtt writes topics and the client id as str, and the fixed
    # header and packet id as write(bytearray, n) (shared/umqtt-simple/socket-calls.json).
    def __init__(self, sock, timeout_ms, tick, mv):
        # mv: the write buffer (a memoryview of _WBUF bytes), the session's for its lifetime: a reconnect
        # with a fragmented heap needs no new block for it
        self.s = sock
        self.t = timeout_ms
        self.tick = tick  # called every 250 ms while a read waits: readings stay on schedule
        self.blocking = True
        self.p = select.poll()
        self.p.register(sock, select.POLLIN)
        self.rx = time.ticks_ms()
        self.mv = mv
        self.n = 0

    def setblocking(self, flag):
        self.blocking = flag

    def flush(self):
        if self.n:
            n, self.n = self.n, 0
            self.s.write(self.mv[:n])

    def read(self, n):
        self.flush()
        if not n:  # umqtt reads an empty payload (a cleared retained topic) as read(0): nothing to wait for
            return b""
        if not self.blocking:
            if not self.p.poll(0):
                return None
        elif not self.p.poll(0):
            end = time.ticks_add(time.ticks_ms(), self.t)
            while True:
                left = time.ticks_diff(end, time.ticks_ms())
                if left <= 0:
                    raise OSError(ETIMEDOUT)
                if self.p.poll(min(left, 250)):
                    break
                if self.tick:
                    self.tick()
        b = self.s.read(n)
        if b:
            self.rx = time.ticks_ms()
        return b

    def write(self, b, n=None):
        if isinstance(b, str):
            b = b.encode()
        if n is None:
            n = len(b)
        elif n < len(b):
            b = memoryview(b)[:n]
        if self.n + n > _WBUF:
            self.flush()
        if n > _WBUF:
            return self.s.write(b)
        self.mv[self.n:self.n + n] = b
        self.n += n
        return n

    def close(self):
        try:
            self.flush()
        finally:
            self.s.close()


class Tls:
    # Passed to MQTTClient as ssl=: every version calls wrap_socket(sock, server_hostname=host) on it.
    def __init__(self, ctx, timeout_ms, tick=None):
        self.ctx = ctx
        self.t = timeout_ms
        self.tick = tick
        self.link = None  # type: Any
        self.mv = memoryview(bytearray(_WBUF))  # every link's write buffer, allocated once
        self.reached = False  # the last attempt got a TCP connection (wrap_socket is called after it)

    def wrap_socket(self, sock, server_hostname=None):
        self.reached = True
        try:
            sock.setsockopt(_NODELAY[0], _NODELAY[1], 1)
        except (OSError, TypeError):  # a port without TCP_NODELAY: coalescing alone keeps one record per packet
            pass
        self.link = Link(self.ctx.wrap_socket(sock, server_hostname=server_hostname), self.t, self.tick, self.mv)
        return self.link


class Net:
    # Replaces the socket module inside umqtt.simple: each socket it opens has a timeout from birth, so
    # the TCP connect and the TLS handshake time out even where connect() has no timeout (1.4.0).
    def __init__(self, timeout_s):
        self.t = timeout_s
        self.made = 0

    def getaddrinfo(self, *a):
        return socket.getaddrinfo(*a)

    def socket(self, *a):
        s = socket.socket(*a)
        s.settimeout(self.t)
        self.made += 1
        return s
