# The virtual board's "ROM" (MicroPython, Unix port). Mounts a LittleFS image at / like an ESP32's
# flash, runs boot.py and main.py, and speaks the REPL protocols mpremote uses: friendly, raw, and
# raw-paste. Resets end the process with a code; the host supervisor restarts it.
# argv: runtime.py IMAGE BLOCKS MODE ROM CAUSE [waits]   (MODE: boot | raw; ROM: the host folder mounted read-write
# at /.vb, holding frozen/ (modules a firmware build freezes), profile.json and, for an emulated ESP32,
# esp32/ (machine, network... see esp32/vbhw.py); CAUSE: machine.reset_cause() after this boot)
import sys
import vfs
import os
import vbmachine

# argv[6] "waits" (a fleet's boards): the Unix port's sleep_ms() and its poll() on a TLS socket, which wake
# every 0.5-1 ms where a board sleeps until it is due, become host sleeps (vbtime, vbssl, vbselect). They
# take ~3 KB of the heap, which on a real board is C in flash: a lone board keeps its heap for the firmware.
HOST_WAITS = sys.argv[6:7] == ["waits"]
if HOST_WAITS:
    import vbtime
    import vbssl
    import vbselect

SOFT_RAW = 10
SOFT_FRIENDLY = 11
DEEPSLEEP = 13  # machine.deepsleep(): the host restarts us after the sleep (ROM/sleep.json)
WINDOW = 256
BS = 4096

out = sys.stdout.buffer
inp = sys.stdin.buffer


class Bdev:
    def __init__(self, f, n):
        self.f = f
        self.n = n

    def readblocks(self, b, buf, off=0):
        self.f.seek(b * BS + off)
        self.f.readinto(buf)

    def writeblocks(self, b, buf, off=0):
        self.f.seek(b * BS + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return BS
        return 0


def mount(image, blocks, rom):
    bdev = Bdev(open(image, "r+b"), blocks)
    try:
        fs = vfs.VfsLfs2(bdev)
    except OSError:
        w("vboard: formatting flash (%d KB LittleFS)\r\n" % (blocks * BS // 1024))
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
    vfs.umount("/")
    vfs.mount(vfs.VfsPosix(rom), "/.vb")  # first in the mount table, so "/" does not shadow it
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path.clear()
    sys.path.extend(["", ".frozen", "/.vb/frozen", "/lib"])  # an ESP32's, plus where our frozen modules are


def w(s):
    out.write(s.encode() if isinstance(s, str) else s)


def getc():
    b = inp.read(1)
    if not b:
        raise SystemExit(0)  # host closed stdin: power off
    return b[0]


G = {"__name__": "__main__"}


def execute(src, name, raw):
    # run src; in raw mode frame the output as \x04 stdout \x04 stderr \x04
    try:
        code = compile(src, name, "exec")
        exec(code, G)
        if raw:
            w(b"\x04\x04")
    except SystemExit as e:
        if e.args and e.args[0] in (vbmachine.HARD, SOFT_FRIENDLY, DEEPSLEEP):
            raise
        if raw:
            w(b"\x04\x04")
    except BaseException as e:  # KeyboardInterrupt too: back to the prompt, as a board does
        if raw:
            w(b"\x04")
        sys.print_exception(e, sys.stdout)
        if raw:
            w(b"\x04")


def run_file(path):
    try:
        os.stat(path)
    except OSError:
        return
    with open(path) as f:
        src = f.read()
    execute(src, path, False)


def raw_repl():
    w("raw REPL; CTRL-B to exit\r\n")
    while True:
        w(">")
        line = bytearray()
        while True:
            try:
                c = getc()
            except KeyboardInterrupt:  # Ctrl-C arrives as SIGINT: clear the line
                line = bytearray()
                continue
            if c == 1:
                if line == b"\x05A":
                    raw_paste()
                    break
                w("raw REPL; CTRL-B to exit\r\n")
                line = bytearray()
                w(">")
            elif c == 2:
                w("\r\n")
                return
            elif c == 3:  # Ctrl-C at the prompt: clear the line
                line = bytearray()
            elif c == 4:
                w("OK")
                if not line:
                    w("\r\nMPY: soft reboot\r\n")
                    raise SystemExit(SOFT_RAW)
                execute(bytes(line).decode(), "<stdin>", True)
                break
            else:
                line.append(c)


def raw_paste():
    w(b"R\x01" + bytes([WINDOW & 0xFF, WINDOW >> 8]))
    data = bytearray()
    got = 0
    while True:
        c = getc()
        if c == 4:
            w(b"\x04")
            break
        data.append(c)
        got += 1
        if got == WINDOW:
            got = 0
            w(b"\x01")
    execute(bytes(data).decode(), "<stdin>", True)


def banner():
    v = sys.implementation.version
    w("MicroPython v%d.%d.%d on sensorpub virtual board (unix port); heap %d\r\n"
      'Type "help()" for more information.\r\n' % (v[0], v[1], v[2], _heap()))


def _heap():
    import gc
    return gc.mem_free() + gc.mem_alloc()


def friendly_repl():
    banner()
    while True:
        w(">>> ")
        line = bytearray()
        while True:
            try:
                c = getc()
            except KeyboardInterrupt:
                w("\r\nKeyboardInterrupt\r\n")
                line = None
                break
            if c == 1:
                w("\r\n")
                raw_repl()
                banner()
                line = None
                break
            if c == 3:  # Ctrl-C at the prompt: a fresh prompt
                w("\r\n")
                line = None
                break
            if c == 4:
                if not line:
                    w("\r\nMPY: soft reboot\r\n")
                    raise SystemExit(SOFT_FRIENDLY)
            elif c in (13, 10):
                w("\r\n")
                break
            elif c in (8, 127):
                if line:
                    line.pop()
                    w("\x08 \x08")
            elif c >= 32:
                line.append(c)
                w(bytes([c]))
        if line:
            src = bytes(line).decode()
            try:
                r = eval(src, G)
                if r is not None:
                    w(repr(r) + "\r\n")
            except SyntaxError:
                execute(src, "<stdin>", False)
            except BaseException as e:
                sys.print_exception(e, sys.stdout)


def emulate(cause):
    # the board's hardware: the emulated ESP32 modules when the profile has them, else a minimal machine
    try:
        os.stat("/.vb/profile.json")
    except OSError:
        vbmachine.CAUSE = cause
        sys.modules["machine"] = vbmachine
        if HOST_WAITS:
            for name, mod in (("time", vbtime), ("ssl", vbssl), ("select", vbselect)):
                sys.modules[name] = mod
        return
    sys.path.insert(0, "/.vb/esp32")
    import vbhw
    sys.path.pop(0)
    vbhw.install(cause)


def main():
    image, blocks, mode, rom, cause = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    mount(image, blocks, rom)
    emulate(cause)
    if mode == "raw":
        try:
            raw_repl()
        except KeyboardInterrupt:
            pass
    else:
        try:  # Ctrl-C during boot leads to the REPL, as on a board
            w("vboard: boot, running boot.py and main.py\r\n")
            run_file("boot.py")
            run_file("main.py")
        except KeyboardInterrupt:
            w("\r\nKeyboardInterrupt\r\n")
    while True:
        try:
            friendly_repl()
        except KeyboardInterrupt:
            w("\r\nKeyboardInterrupt\r\n")


main()
