# Battery mode (deep_sleep in config): each wake takes one reading into the flash outbox; every publish_every-th
# wake (or when readings are left from a wake whose broker was down) one connection sends all that is queued,
# answers a remote config, says "sleeping" and sends DISCONNECT. Then machine.deepsleep() until the next
# reading: a deep sleep ends the interpreter, and the board boots again with reset cause deep_sleep. The
# outbox keeps the readings and seq on flash across sleeps; the RTC keeps the time (the board's sync_time).
import time

import log
from contract import STATUS_SLEEPING


def run(p):
    # p: the Publisher, just started (a boot or a wake). Returns only when max_cycles readings were taken
    # and sent, or when a remote config turned deep_sleep off (the always-on loop goes on)
    cfg = p.cfg
    p.cycles = p.box.next_seq()  # readings taken on earlier wakes count toward max_cycles
    p.tick()  # this wake's reading (due at start); p.due is the next one
    if len(p.box) >= cfg["publish_every"] or (p.finished() and len(p.box)):
        while p.send():  # one connection attempt: if the broker is down, the readings wait for a later wake
            pass
        if p.sess.has_mail():
            p.mail()  # a remote config or a certificate: arrived right after the SUBACK, while the readings went out
        if not cfg["deep_sleep"]:
            return  # turned off remotely: stay awake and connected
    p.sess.stop(STATUS_SLEEPING)  # if connected: "sleeping", then DISCONNECT (no Last Will)
    if p.finished() and not len(p.box):
        return
    ms = max(0, time.ticks_diff(p.due, time.ticks_ms()))
    awake = time.ticks_diff(time.ticks_ms(), log.T0)  # since the interpreter started: this wake's cost
    log.info("deep sleep for %d ms, %d queued, awake %d ms" % (ms, len(p.box), awake))
    p.board.deepsleep(ms)
