# The publisher: read the sensor every interval_s, queue the reading in the flash outbox, drain the
# outbox over the session. Config and credential errors are logged and retried with back-off.
import gc
import json
import sys
import time
from collections import OrderedDict

import log
from contract import (CERT_LEAF, CONFIG_LEAF, ERROR_FIELD, HEALTH_FIELDS, READING_FIELDS, STATUS_LEAF,
                      STATUS_ONLINE, STATUS_OK, STATUS_SENSOR_ERROR, STATUS_TAIL, TELEMETRY_LEAF)
from outbox import SLOT, Outbox

_SEP = (",", ":")  # compact JSON
_TAIL = STATUS_ONLINE[STATUS_ONLINE.find(STATUS_TAIL):]  # the status's run-time part: cert, config, refusals
_NO_RENEWAL = [0]  # set once a renewal ran out of heap: for the rest of this boot (app.py stays loaded)
_EPOCH = 0 if time.gmtime(0)[0] == 1970 else 946684800  # some ports count from 2000


def _ts(synced):
    if not synced:
        return None
    return (time.time_ns() // 1000000 + _EPOCH * 1000) / 1000


class Publisher:
    def __init__(self, cfg, board, ctx, expires=None, online=None, version=0, serial="?"):
        # expires: the client certificate's notAfter (time.mktime); online: the status document; version: the
        # remote config in use; serial: the client certificate's (all from startup.prepare)
        from session import Session  # imported late: umqtt and select cost RAM
        self.cfg = cfg
        self.board = board
        self.expires = expires
        self.version = version
        self.serial = serial
        self.refused = 0  # the last remote config version refused
        self.cert_refused = None  # the serial of the last pushed certificate refused (tried once a boot)
        self.notes = ["", ""]  # the status's refusals: of a remote config, of a pushed certificate
        self.trial = False  # renew.py runs with a pushed certificate written beside the one in use
        dev = cfg["device_id"]
        pre = cfg["topic_prefix"] + "/" + dev + "/"
        self.topic = pre + TELEMETRY_LEAF
        self.sess = Session(cfg, ctx, pre + STATUS_LEAF, board.network_up, self.tick, online, self.clock,
                            pre + CONFIG_LEAF, pre + CERT_LEAF)
        self.box = Outbox(cfg["outbox_slots"], dev)
        # the fixed fields first and in order (a dict's order is its hash table's): the outbox stores a reading
        # that starts with its device_id and seq without them
        r = OrderedDict()  # type: dict
        for k in READING_FIELDS + HEALTH_FIELDS:  # sized for a health reading now, before TLS takes the heap
            r[k] = None
        for k in HEALTH_FIELDS:
            del r[k]
        r[READING_FIELDS[0]] = dev
        self.reading = r
        self.t0 = time.ticks_ms()
        self.synced = False
        self.sent = 0
        self.cycles = 0
        self.due = self.t0
        self.busy = False

    def clock(self):
        # before each TLS handshake, once the network is up: TLS checks the broker's certificate dates, and an
        # ESP32 whose clock was never set fails that with the same code as an untrusted certificate
        if not self.synced:
            self.synced = self.board.sync_time()
        if not self.synced and time.gmtime()[0] < 2025:
            raise OSError(_say("clock_unset", self.cfg["ntp_host"]))

    def read(self):
        r = self.reading
        for k in list(r):
            if k not in READING_FIELDS:
                del r[k]
        _, seq, ts, up, st = READING_FIELDS  # locals: no names kept in RAM
        r[seq] = self.box.next_seq()
        if not self.synced:
            self.synced = self.board.sync_time()
        r[ts] = _ts(self.synced)
        r[up] = time.ticks_diff(time.ticks_ms(), self.t0) // 1000
        try:
            r.update(self.board.read_sensor())
            r[st] = STATUS_OK
        except Exception as e:  # a failing sensor never stops publishing
            r[st] = STATUS_SENSOR_ERROR
            r[ERROR_FIELD] = ("%s %s" % (type(e).__name__, e))[:80]
        n = self.cfg["health_every"]
        if n and r[seq] % n == 0:
            self.health(r)
        b = json.dumps(r, separators=_SEP).encode()
        if len(b) >= SLOT and n:  # health fields are what gives way, never the reading
            for k in HEALTH_FIELDS:
                r.pop(k, None)
            b = json.dumps(r, separators=_SEP).encode()
        if len(b) >= SLOT:
            raise ValueError("reading too large for an outbox slot")
        if not self.box.put(b):
            log.warn("outbox full (%d slots): dropped the oldest reading" % self.box.n)
        del b

    def health(self, r):
        # the health fields (contract.HEALTH_FIELDS), after the sensor's
        heap, rssi, rec, queued, days = HEALTH_FIELDS
        gc.collect()
        r[heap] = gc.mem_free()
        v = self.board.rssi()
        if v is not None:
            r[rssi] = v
        r[rec] = max(0, self.sess.connects - 1)
        r[queued] = len(self.box)
        if self.expires is not None and self.synced:
            r[days] = (self.expires - time.mktime(time.gmtime())) // 86400

    def configure(self):
        # a remote config document arrived: remote.py applies it or refuses it (loaded for this, then dropped).
        # Collected first: a board given .py sources compiles remote.py and config.py now, and the garbage of
        # the loop (and of the last document) fragmented the heap: the 3rd change in a row ran out of it
        gc.collect()
        import remote
        try:
            remote.configure(self)
        finally:
            del sys.modules["remote"], remote
            sys.modules.pop("config", None)
            gc.collect()

    def renew(self):
        # a certificate arrived: renew.py tries it and keeps it or rolls back (loaded for this, then dropped)
        if _NO_RENEWAL[0]:
            self.sess.certbox = None
            return
        gc.collect()
        try:
            import renew
            renew.run(self)
        except MemoryError as e:
            # too little heap for the check or a second TLS context. The retained certificate comes again at
            # every CONNECT, so pushes are skipped until a reset rather than failing at each (a publisher
            # restart would not end that); past the trial's start, the restart rebuilds the old context
            _NO_RENEWAL[0] = 1
            self.sess.certbox = None
            log.error("certificate renewal ran out of heap (%d bytes free): pushed certificates are skipped until "
                      "a reset; the certificate in use stays" % gc.mem_free())
            if self.trial:
                raise  # printed by main() as it restarts the publisher
            sys.print_exception(e)
        finally:
            self.trial = False
            for m in ("renew", "creds", "certinfo", "contract"):
                sys.modules.pop(m, None)
            gc.collect()

    def mail(self):
        # what the broker sent on our own topics: a remote config, a renewed certificate
        if self.sess.inbox is not None:
            self.configure()
        if self.sess.certbox is not None:
            self.renew()

    def announce(self):
        # the online status with its run-time part set anew (the certificate and config in use, what was
        # refused): kept for each CONNECT, and sent now if connected
        d = self.sess.online
        d = d[:d.find(STATUS_TAIL.encode())]
        self.sess.announce(d + (_TAIL % (self.serial, self.version, self.notes[0] + self.notes[1])).encode())

    def run(self):
        try:
            self._loop()
        except KeyboardInterrupt:  # Ctrl-C (mpremote, a flash): a planned stop, not a crash
            self.sess.stop()
            raise
        self.sess.stop()
        log.info("done cycles=%d sent=%d" % (self.cycles, self.sent))

    def finished(self):
        m = self.cfg["max_cycles"]
        return m and self.cycles >= m

    def tick(self):
        # take the reading if it is due: called by the loop and from inside the session's waits (CONNACK,
        # PUBACK, Wi-Fi join), so an outage or a dead link never delays sampling by more than one interval
        self.board.feed()  # the watchdog: every pass of the loop and every 250 ms of any wait
        if self.busy or self.finished():
            return
        now = time.ticks_ms()
        if time.ticks_diff(now, self.due) < 0:
            return
        self.busy = True
        try:
            self.read()
        except (OSError, ValueError, MemoryError) as e:  # flash full, a reading too large, no RAM left for
            # it while a TLS handshake holds the heap: say so, keep sampling
            log.error("reading seq %d not stored: %s" % (self.box.next_seq(), _say("store_failed", e)))
        finally:
            self.busy = False
        self.cycles += 1
        interval = self.cfg["interval_s"] * 1000
        self.due = time.ticks_add(self.due, interval)
        if time.ticks_diff(self.due, now) <= 0 and interval:  # fell behind (a blocking connect): the grid ahead
            self.due = time.ticks_add(now, interval - time.ticks_diff(now, self.due) % interval)
        gc.collect()
        if self.cycles % 100 == 0:
            log.info("stats cycles=%d sent=%d queued=%d heap_free=%d heap_alloc=%d"
                     % (self.cycles, self.sent, len(self.box), gc.mem_free(), gc.mem_alloc()))

    def _loop(self):
        cfg = self.cfg
        self.due = time.ticks_ms()
        log.info("publishing to %s every %d s, outbox %d/%d" % (self.topic, cfg["interval_s"], len(self.box),
                                                                self.box.n))
        while True:
            if cfg["deep_sleep"]:  # battery mode (flashed, or set by a remote config): one wake, then deep sleep
                import battery
                battery.run(self)  # returns after max_cycles, or when a remote config turned deep_sleep off
                if cfg["deep_sleep"]:
                    return
            self.tick()
            if self.sess.has_mail():
                self.mail()
            if self.finished() and not len(self.box):
                break
            if self.send():
                continue
            wait = self.sess.retry_in() if len(self.box) else cfg["interval_s"] * 1000
            left = time.ticks_diff(self.due, time.ticks_ms())
            self.board.led(False)
            self.sess.idle(max(0, min(wait, left)))

    def send(self):
        # the oldest queued reading to the broker: True once acknowledged (connecting first if need be)
        msg = self.box.peek()
        if msg is None:
            return False
        head = self.box.head
        seq = self.box.seq - len(self.box)
        if not self.sess.publish(self.topic, msg):
            return False
        if self.box.head == head:  # not already pushed out by a full outbox during the wait
            self.box.pop()
        self.sent += 1
        self.board.led(True)
        log.info("published seq", seq, "queued", len(self.box))
        return True


def _say(what, arg):
    # a rare line from reasons.py, loaded at the first failure and not before (RAM)
    try:
        import reasons
        return getattr(reasons, what)(arg)
    except (ImportError, MemoryError):  # an incomplete flash, or no RAM for it: the bare facts
        return "%s: %s" % (what, arg)


def main(board_name="board"):
    # never fall to the REPL: an unexpected error prints its traceback and the publisher restarts with
    # back-off (5, 10, 20... 60 s); a missing module (an incomplete flash) is one line naming it
    delay = 5
    n = 0  # this boot's number, counted once
    while True:
        try:
            import startup  # once a start, then dropped: its code (and config's, creds') costs no RAM afterwards
            n = n or startup.count()
            args = startup.prepare(__import__(board_name), n)
            del sys.modules["startup"], startup
            gc.collect()  # before session.py and umqtt load: a board given .py sources compiles them now
            p = Publisher(*args)
            del args
            sys.modules.pop("contract", None)  # every module took the facts it uses: the table itself can go
            gc.collect()
            p.run()
            return  # only with max_cycles
        except ImportError as e:
            try:
                import reasons
                line = reasons.missing_module(e)
            except ImportError:  # reasons.py is what is missing
                line = "firmware incomplete (%s): re-run 'sensorpub flash'" % e
            log.error("%s; retrying in %d s" % (line, delay))
        except Exception as e:
            log.error("fatal: %s %s; restarting the publisher in %d s" % (type(e).__name__, e, delay))
            sys.print_exception(e)
        p = None  # type: ignore[assignment]  # the failed publisher: its RAM goes to the next start
        sys.modules.pop("startup", None)
        gc.collect()
        time.sleep(delay)
        delay = min(delay * 2, 60)
