# `machine` for the virtual board (MicroPython). The Unix port's machine module has no reset();
# these exit codes tell the sensorpub vboard supervisor how to restart the interpreter.
import sys

HARD = 12


def reset():
    sys.stdout.flush() if hasattr(sys.stdout, "flush") else None
    raise SystemExit(HARD)


def soft_reset():
    raise SystemExit(11)


def unique_id():
    return b"vboard"


def freq(*_):
    return 240000000


CAUSE = 1  # set by the runtime at boot


def reset_cause():
    return CAUSE


def idle():
    pass
