# `time` for the virtual board (MicroPython): the Unix port's own, except sleep_ms(), which becomes one
# host sleep. The Unix port's sleep_ms() wakes every 0.5 ms to run scheduled callbacks (about 2,000
# wake-ups a second while a firmware idles), where a board's RTOS delay sleeps until it is due.
# Everything else is looked up in the real module (no copies: this heap is the board's).
import time as _t


def sleep_ms(ms):
    if ms > 0:
        _t.sleep(ms / 1000)  # one select(); Ctrl-C (SIGINT) still raises KeyboardInterrupt in it


def __getattr__(name):
    return getattr(_t, name)
