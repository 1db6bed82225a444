# Session layer: owns the MQTT connection. umqtt.simple (frozen in the board's firmware, any version
# from 1.4.0 on) speaks the protocol; link failures it raises are caught here: close, back off (full
# jitter), reconnect. Callers never see socket errors. A programming error is not a lost link: its
# traceback goes to the console, it is counted, and the session backs off all the same.
import errno
import random
import socket
import sys
import time

from umqtt import simple as _mq
from umqtt.simple import MQTTClient, MQTTException

import log
from contract import STATUS_LOST, STATUS_STOPPED
from link import ETIMEDOUT, Net, Tls

if False:  # for the type checker only; costs nothing on the board
    from typing import Any

# what a dead or refusing link raises inside umqtt.simple: socket and TLS errors, a CONNACK refusal,
# and its asserts/indexing on a short or malformed read
LINK_ERRORS = (OSError, MQTTException, AssertionError, IndexError)

_timeout_kw = None  # does this umqtt.simple's connect() take timeout=? (None: not known yet)


def _connect(c, net, timeout_s):
    # connect(timeout=) where the client has it (1.5.0 on), plain connect() where it has not (1.4.0)
    global _timeout_kw
    if _timeout_kw is not False:
        made = net.made
        try:
            c.connect(timeout=timeout_s)
            _timeout_kw = True
            return
        except TypeError:
            if _timeout_kw or net.made != made:  # raised after it started: a real bug, not the signature
                raise
            _timeout_kw = False  # refused the keyword before opening a socket
    c.connect()


# what a peer closing the connection looks like: EPIPE/ECONNRESET on a write, a fatal TLS alert or
# close_notify, umqtt's OSError(-1) on an empty read (no errno.EPIPE in some ports)
_CLOSED = (32, errno.ECONNRESET, -0x7780, -0x7880, -1)


def _closed(e):
    return isinstance(e, OSError) and bool(e.args) and e.args[0] in _CLOSED


def why(e):
    # the console's reason for a failure: reasons.py is loaded at the first failure, not before (RAM)
    try:
        import reasons
        return reasons.why(e)
    except MemoryError:
        return "%s %s" % (type(e).__name__, e.args)


def refused():
    try:
        import reasons
        return reasons.refused_after_handshake()
    except MemoryError:
        return "the broker ended the connection at the TLS handshake (refused our certificate?)"


def is_link_error(e):
    # True for what a dead or refusing link raises; False for a programming error
    if isinstance(e, LINK_ERRORS) or isinstance(e, MemoryError):
        return True
    return isinstance(e, ValueError) and "ertificate" in str(e)  # mbedTLS: "invalid certificate"...


class Session:
    # tick: called while the session waits (CONNACK, PUBACK, Wi-Fi join, idle), so the caller takes its
    # readings on schedule whatever the link does. The waits MicroPython cannot interrupt (the TCP connect,
    # the TLS handshake) are capped at one interval: a reading is at most that late.
    # Status payloads (retained): `online` (contract.STATUS_ONLINE filled in, bytes) after each CONNECT,
    # OFFLINE_LOST as the Last Will, OFFLINE_STOPPED on a planned stop.
    OFFLINE_LOST = STATUS_LOST
    OFFLINE_STOPPED = STATUS_STOPPED

    def __init__(self, cfg, ctx, status_topic, net_up=None, tick=None, online=None, clock=None, config_topic=None,
                 cert_topic=None):
        self.cfg = cfg
        self.tick = tick
        self.clock = clock  # raises OSError while the clock is unset, so no TLS starts without a date
        if online is None:  # a session built by a test or tool: the firmware passes startup.prepare()'s
            from contract import STATUS_ONLINE
            online = (STATUS_ONLINE % ("unknown", "-", "-", "-", 0, "-", 0, "")).encode()
        self.online = online
        self.tls = Tls(ctx, cfg["connect_timeout_s"] * 1000, tick)
        self.net = Net(min(cfg["connect_timeout_s"], max(1, cfg["interval_s"])))
        _mq.socket = self.net  # type: ignore[attr-defined]  # the module global every version connects with
        self.status = status_topic
        self.net_up = net_up            # board's network bring-up, called before each CONNECT
        self.c = None  # type: Any
        self.fresh = False  # connected, and nothing published on this connection yet
        self.denied = 0     # connections in a row the broker closed at their first publish
        self.attempt = 0
        self.connects = 0   # connections since boot
        self.retry_at = time.ticks_ms()
        self.last_connect = time.ticks_add(time.ticks_ms(), -10000)
        self.last_tx = 0  # type: Any
        self.ping_at = None
        self.bugs = 0
        self.seen = []  # bug signatures whose traceback was printed
        self.configure()
        self.feed_ms = cfg["wdt_s"] * 250 or 60000  # an idle board wakes only to feed the watchdog
        self.probe_at = self.retry_at
        # remote config and certificate renewal: the topics subscribed to after each CONNECT; the last document
        # received on each (inbox: config, certbox: a certificate), for the caller to take (never inside a wait)
        self.subs = [t for t in (config_topic, cert_topic) if t]
        self.cert_t = cert_topic.encode() if cert_topic else None
        self.inbox = None  # type: Any
        self.certbox = None  # type: Any
        self.sub_denied = 0  # connections in a row the broker closed at one of our subscriptions
        self.addr = None  # the broker's address, resolved by the first probe

    def configure(self):
        # (re)read the timings a remote config may change; the next CONNECT uses the new keepalive
        cfg = self.cfg
        self.ka_ms = cfg["keepalive_s"] * 1000
        self.ack_ms = cfg["puback_timeout_s"] * 1000
        self.probe_ms = cfg["probe_s"] * 1000

    def announce(self, online):
        # a new online status document (a remote config applied or refused): kept for each CONNECT, sent now
        self.online = online
        if self.c:
            self._send(self.status, online, True, "announcing the config")

    def _on_msg(self, topic, msg):
        # umqtt calls this inside its reads: the publisher takes it from the loop
        if topic == self.cert_t:
            self.certbox = msg
        else:
            self.inbox = msg

    def has_mail(self):
        return self.inbox is not None or self.certbox is not None

    def _subscribe(self):
        # the config and certificate topics, after each CONNECT; False if the link failed. A broker that refuses
        # one (an ACL or an AWS policy from before it) turns that one off until the next boot, in one line.
        for t in list(self.subs):
            try:
                self.c.subscribe(t, 1)
            except Exception as e:
                if isinstance(e, MQTTException) and e.args and e.args[0] == 0x80:  # SUBACK failure: link fine
                    self._sub_off(t)
                    continue
                if _closed(e):  # AWS IoT hangs up on a subscription its policy denies
                    self.sub_denied += 1
                    if self.sub_denied >= 2:
                        self._sub_off(t)
                self._failed(e, "subscribing to " + t)
                return False
        self.sub_denied = 0  # counted over connections: one topic accepted must not clear another's refusals
        return True

    def _sub_off(self, t):
        try:
            import reasons
            log.error(reasons.sub_refused(t))
        except MemoryError:
            log.error("subscription to %s refused: turned off until the next boot" % t)
        self.subs.remove(t)
        self.sub_denied = 0

    def close(self, disconnect=False):
        # disconnect: a planned stop sends DISCONNECT, so the broker does not publish the Last Will
        c, self.c = self.c, None
        if c and c.sock is not None:
            try:
                if disconnect:
                    c.disconnect()
                else:
                    c.sock.close()
            except OSError:
                pass

    def stop(self, doc=None):
        # a planned stop: a retained 'offline' (doc: another one, e.g. sleeping), then DISCONNECT, so the Last
        # Will (for a crash) stays unused
        if not self.c:
            return
        self.c.sock.n = 0  # drop a packet half-written when Ctrl-C came
        self.c.sock.t = min(self.ack_ms, 2000)  # mpremote waits ~10 s for the REPL after its Ctrl-C
        if self._send(self.status, doc or self.OFFLINE_STOPPED, True, "announcing offline"):
            self.close(disconnect=True)
            log.info("stopped: status offline, DISCONNECT sent")

    def retry_in(self):
        # ms until the next CONNECT is allowed (0 when connected or due)
        return 0 if self.c else max(0, time.ticks_diff(self.retry_at, time.ticks_ms()))

    def _failed(self, e, doing):
        # close and schedule the next CONNECT; a link error gets one line, a bug its traceback
        self.close()
        bug = not is_link_error(e)
        if bug:
            self.bugs += 1
            sig = "%s %s" % (type(e).__name__, e)
            if sig not in self.seen and len(self.seen) < 8:
                self.seen.append(sig)
                log.error("BUG while %s (not a link failure; please report it):" % (doing or "bringing the network up"))
                sys.print_exception(e)
            doing = "%s: BUG %s, %d so far" % (doing or "network", sig, self.bugs)
        self.attempt += 1
        win = min(self.cfg["backoff_cap_s"], self.cfg["backoff_base_s"] * (1 << min(self.attempt - 1, 16)))
        delay = random.getrandbits(16) * win / 65536  # full jitter over the window
        since = time.ticks_diff(time.ticks_ms(), self.last_connect) / 1000
        delay = max(delay, 1 - since)  # never more than one CONNECT per second
        self.retry_at = time.ticks_add(time.ticks_ms(), int(delay * 1000))
        if bug:
            log.error("%s; reconnect in %.1f s (attempt %d, window %d s)" % (doing, delay, self.attempt, win))
        else:
            log.warn("%s: %s; reconnect in %.1f s (attempt %d, window %d s)"
                     % ("link lost while " + doing if doing else "network down", why(e), delay, self.attempt, win))

    def connect(self):
        # one attempt, if the back-off allows; False if not connected afterwards
        if self.c:
            return True
        if self.retry_in():
            return False
        cfg = self.cfg
        self.last_connect = time.ticks_ms()
        self.tls.reached = False
        doing = "connecting to %s:%d" % (cfg["broker_host"], cfg["broker_port"])
        if self.net_up:
            try:
                self.net_up(self.tick)
                if self.clock:
                    self.clock()
            except Exception as e:
                self._failed(e, None)
                return False
        try:
            c = MQTTClient(cfg["client_id"], cfg["broker_host"], port=cfg["broker_port"],
                           keepalive=cfg["keepalive_s"], ssl=self.tls)
            c.set_last_will(self.status, self.OFFLINE_LOST, retain=True, qos=1)
            c.set_callback(self._on_msg)
            self.c = c
            self.tls.link = None
            _connect(c, self.net, self.net.t)  # the socket timeout: capped at one interval
        except Exception as e:
            if _closed(e):  # the broker hung up during or right after the TLS handshake: on our certificate
                e = OSError(refused())
            self._failed(e, doing)
            return False
        link = self.tls.link
        link.t = self.ack_ms
        self.connects += 1
        self.fresh = True
        self.ping_at = None
        try:
            ci = link.s.cipher()
            tls = "%s %s" % (ci[1], ci[0])
        except Exception:  # cipher() is missing on older ports: only the log line loses detail
            tls = "TLS"
        log.info("connected to %s:%d with %s as %s" % (cfg["broker_host"], cfg["broker_port"], tls, cfg["client_id"]))
        return self._send(self.status, self.online, True, "announcing online") and self._subscribe()

    def _send(self, topic, msg, retain, doing):
        if self.c.pid >= 65535:  # umqtt.simple never wraps its packet id: 65536 goes out as 0 and never matches
            self.c.pid = 0
        try:
            self.c.publish(topic, msg, retain, 1)  # QoS 1: returns once the PUBACK came
        except Exception as e:
            if self.fresh and _closed(e):
                self.denied += 1
                if self.denied >= 2:  # not a one-off drop: AWS IoT hangs up on a publish its policy denies
                    e = OSError("the broker closed the connection at our first publish to %s, %d times in a row: "
                                "likely denied by its policy or ACL (check the policy, client_id and topic_prefix)"
                                % (topic, self.denied))
            self._failed(e, doing)
            return False
        self.fresh = False
        self.denied = 0
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
        # wait ms, asleep until the next thing to do: while connected, a message from the broker or the
        # PINGREQ due at keepalive/2 (the link is dead if nothing answers it); while backing off from a
        # broker that did not even accept TCP, a probe every probe_s; and the watchdog's feed
        end = time.ticks_add(time.ticks_ms(), ms)
        while True:
            now = time.ticks_ms()
            left = time.ticks_diff(end, now)
            if left <= 0:
                return
            nap = min(left, self.feed_ms)
            if self.c:
                try:
                    self.c.check_msg()
                    if self.has_mail():  # a remote config or a certificate: the caller takes it now
                        return
                    link = self.c.sock
                    if self.ping_at is not None:
                        if time.ticks_diff(link.rx, self.ping_at) >= 0:
                            self.ping_at = None  # PINGRESP (or anything) came back
                        elif time.ticks_diff(now, self.ping_at) > self.ack_ms:
                            raise OSError(ETIMEDOUT)
                    if self.ping_at is None and time.ticks_diff(now, self.last_tx) >= self.ka_ms // 2:
                        self.c.ping()
                        link.flush()
                        self.last_tx = self.ping_at = now
                    if self.ping_at is None:
                        nap = min(nap, self.ka_ms // 2 - time.ticks_diff(now, self.last_tx))
                    else:
                        nap = min(nap, self.ack_ms + 1 - time.ticks_diff(now, self.ping_at))
                except Exception as e:
                    self._failed(e, "idle (keepalive)")
                    return
            elif self.probe_ms and not self.tls.reached:
                if time.ticks_diff(now, self.probe_at) >= 0 and self._probe():
                    return  # the broker is back: reconnect soon, not at the end of a long back-off window
                nap = min(nap, max(1, time.ticks_diff(self.probe_at, now)))
            if self.tick:
                self.tick()  # feeds the watchdog
            if self.c:
                self.c.sock.p.poll(max(1, nap))  # wakes for a message from the broker
            else:
                time.sleep_ms(max(1, nap))

    def _probe(self):
        # a plain TCP connect to the broker while backing off: True (and a reconnect brought forward, spread
        # over one probe interval so a fleet does not return at once) if it accepts; the next probe is
        # due one interval later, with jitter
        self.probe_at = time.ticks_add(time.ticks_ms(), self.probe_ms // 2 + random.getrandbits(16) * self.probe_ms // 65536)
        if time.ticks_diff(self.retry_at, self.probe_at) <= 0:
            return False  # the next CONNECT comes first anyway
        cfg = self.cfg
        s = None
        try:
            if self.addr is None:
                self.addr = socket.getaddrinfo(cfg["broker_host"], cfg["broker_port"])[0][-1]
            s = socket.socket()
            s.settimeout(1)
            s.connect(self.addr)
        except OSError:
            return False
        finally:
            if s:
                s.close()
        delay = random.getrandbits(16) * self.probe_ms // 65536
        self.retry_at = time.ticks_add(time.ticks_ms(), delay)
        log.info("broker %s:%d accepts connections again: reconnecting in %.1f s" % (cfg["broker_host"],
                                                                                     cfg["broker_port"], delay / 1000))
        return True
