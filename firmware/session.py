# Session layer: owns the MQTT connection. umqtt.simple speaks the protocol; anything it raises means
# the link is gone, so we close, back off (full jitter) and reconnect. Callers never see socket errors.
import random
import select
import time

from micropython import const
from umqtt.simple import MQTTClient, MQTTException

import log

if False:  # for the type checker only; costs nothing on the board
    from typing import Any

_ETIMEDOUT = const(110)
_WBUF = const(512)
# mbedTLS codes MicroPython raises as OSError(-code); see mbedtls/x509.h and ssl.h
_HINTS = {
    -0x2700: "broker certificate not trusted: /certs/ca.der is not the broker's CA, or the broker host is not in its certificate",
    -0x7780: "broker rejected the TLS handshake: is /certs/client.der issued by the broker's CA, and not revoked?",
    -0x7880: "broker closed the TLS session",
}


class _TimedSock:
    # Wraps the SSL socket umqtt uses. Reads get a timeout via poll (SSLSocket has no settimeout, and
    # umqtt's wait_msg resets blocking mode): a silent broker raises ETIMEDOUT instead of hanging.
    # Writes are coalesced until the next read or flush(): umqtt sends a PUBLISH in several small writes,
    # and Nagle + delayed ACK would hold each one ~40 ms.
    def __init__(self, sock, timeout_ms):
        self.s = sock
        self.t = timeout_ms
        self.blocking = True
        self.p = select.poll()
        self.p.register(sock, select.POLLIN)
        self.rx = time.ticks_ms()
        self.buf = bytearray(_WBUF)
        self.mv = memoryview(self.buf)
        self.n = 0

    def setblocking(self, flag):
        self.blocking = flag

    def flush(self):
        if self.n:
            n, self.n = self.n, 0
            self.s.write(self.mv[:n])

    def read(self, n):
        self.flush()
        if not self.p.poll(self.t if self.blocking else 0):
            if self.blocking:
                raise OSError(_ETIMEDOUT)
            return None
        b = self.s.read(n)
        if b:
            self.rx = time.ticks_ms()
        return b

    def write(self, b, n=None):
        if n is None:
            n = len(b)
        if self.n + n > _WBUF:
            self.flush()
        if n > _WBUF:
            return self.s.write(b if n == len(b) else memoryview(b)[:n])
        self.buf[self.n:self.n + n] = b if n == len(b) else memoryview(b)[:n]
        self.n += n
        return n

    def close(self):
        self.s.close()


def why(e):
    # one short reason for a failure, with a hint for the TLS errors users meet
    if isinstance(e, OSError) and e.args:
        c = e.args[0]
        if c in _HINTS:
            return "%s (%s)" % (_HINTS[c], c)
        if c == _ETIMEDOUT:
            return "timed out"
        return "OSError %s" % (e.args,)
    if isinstance(e, ValueError) and "ertificate" in str(e):  # mbedTLS verify failure, as MicroPython raises it
        return "%s (%s)" % (_HINTS[-0x2700], str(e).strip())
    if isinstance(e, MQTTException):
        return "CONNACK refused, code %s (1-5: protocol, id, unavailable, user, not authorised)" % (e.args,)
    return "%s %s" % (type(e).__name__, e.args)


class Session:
    def __init__(self, cfg, ctx, status_topic, net_up=None):
        self.cfg = cfg
        self.ctx = ctx
        self.status = status_topic
        self.net_up = net_up            # board's network bring-up, called before each CONNECT
        self.c = None  # type: Any
        self.attempt = 0
        self.retry_at = time.ticks_ms()
        self.last_connect = time.ticks_add(time.ticks_ms(), -10000)
        self.last_tx = 0  # type: Any
        self.ping_at = None
        self.connects = 0
        self.ka_ms = cfg["keepalive_s"] * 1000
        self.ack_ms = cfg["puback_timeout_s"] * 1000

    def close(self):
        if self.c:
            try:
                self.c.sock.close()
            except Exception:
                pass
            self.c = None

    def retry_in(self):
        # ms until the next CONNECT is allowed (0 when connected or due)
        return 0 if self.c else max(0, time.ticks_diff(self.retry_at, time.ticks_ms()))

    def _lost(self, e, doing):
        self.close()
        self.attempt += 1
        win = min(self.cfg["backoff_cap_s"], self.cfg["backoff_base_s"] * (1 << min(self.attempt - 1, 16)))
        delay = random.getrandbits(16) * win / 65536  # full jitter over the window
        since = time.ticks_diff(time.ticks_ms(), self.last_connect) / 1000
        delay = max(delay, 1 - since)  # never more than one CONNECT per second
        self.retry_at = time.ticks_add(time.ticks_ms(), int(delay * 1000))
        log.warn("link lost while %s: %s; reconnect in %.1f s (attempt %d, window %d s)"
                 % (doing, why(e), delay, self.attempt, win))

    def connect(self):
        # one attempt, if the back-off allows; False if not connected afterwards
        if self.c:
            return True
        if self.retry_in():
            return False
        cfg = self.cfg
        self.last_connect = time.ticks_ms()
        try:
            if self.net_up:
                self.net_up()
            c = MQTTClient(cfg["client_id"], cfg["broker_host"], port=cfg["broker_port"],
                           keepalive=cfg["keepalive_s"], ssl=self.ctx)
            c.set_last_will(self.status, b"offline", retain=True, qos=1)
            self.c = c
            c.connect(timeout=cfg["connect_timeout_s"])
        except Exception as e:  # OSError, MQTTException, AssertionError, IndexError...
            self._lost(e, "connecting to %s:%d" % (cfg["broker_host"], cfg["broker_port"]))
            return False
        c.sock = _TimedSock(c.sock, self.ack_ms)
        self.connects += 1
        self.ping_at = None
        try:
            ci = c.sock.s.cipher()
            tls = "%s %s" % (ci[1], ci[0])
        except Exception:
            tls = "TLS"
        log.info("connected to %s:%d with %s as %s" % (cfg["broker_host"], cfg["broker_port"], tls, cfg["client_id"]))
        return self._send(self.status, b"online", True, "announcing online")

    def _send(self, topic, msg, retain, doing):
        try:
            self.c.publish(topic, msg, retain, 1)  # QoS 1: returns once the PUBACK came
        except Exception as e:
            self._lost(e, doing)
            return False
        self.last_tx = time.ticks_ms()
        return True

    def publish(self, topic, msg):
        # True once the broker acknowledged it; False if not connected (back-off pending) or link lost
        if not self.connect():
            return False
        if self._send(topic, msg, False, "publishing"):
            self.attempt = 0  # reset back-off after a successful publish
            return True
        return False

    def idle(self, ms):
        # wait ms; while connected keep the link alive: PINGREQ at keepalive/2, dead if no answer
        end = time.ticks_add(time.ticks_ms(), ms)
        while True:
            left = time.ticks_diff(end, time.ticks_ms())
            if left <= 0:
                return
            if self.c:
                try:
                    self.c.check_msg()
                    now = time.ticks_ms()
                    if self.ping_at is not None:
                        if time.ticks_diff(self.c.sock.rx, self.ping_at) >= 0:
                            self.ping_at = None  # PINGRESP (or anything) came back
                        elif time.ticks_diff(now, self.ping_at) > self.ack_ms:
                            raise OSError(_ETIMEDOUT)
                    if self.ping_at is None and time.ticks_diff(now, self.last_tx) >= self.ka_ms // 2:
                        self.c.ping()
                        self.c.sock.flush()
                        self.last_tx = self.ping_at = now
                except Exception as e:
                    self._lost(e, "idle (keepalive)")
                    return
            time.sleep_ms(min(left, 200))
