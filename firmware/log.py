# Console log: one line per event, "[uptime] LEVEL message". Never pass secrets here.
import time

T0 = time.ticks_ms()


def log(level, *parts):
    t = time.ticks_diff(time.ticks_ms(), T0)
    print("[%9.3f]" % (t / 1000), level, *parts)


def info(*parts):
    log("INFO", *parts)


def warn(*parts):
    log("WARN", *parts)


def error(*parts):
    log("ERROR", *parts)
