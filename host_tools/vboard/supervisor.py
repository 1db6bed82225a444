"""The virtual board's supervisor process (CPython): owns the pty and the interpreter.

argv: DIR MICROPYTHON HEAPSIZE BLOCKS. Relays bytes between the pty master and the interpreter's
stdin/stdout, turns Ctrl-C (0x03) into SIGINT (as a board's UART IRQ raises KeyboardInterrupt),
appends all output to DIR/console.log, and restarts the interpreter when it exits with a reset code,
after a deep sleep (DIR/rom/sleep.json), or when the emulated watchdog fired (DIR/rom/wdt.expired),
telling it the reset cause machine.reset_cause() reports.
"""
import errno
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
PROMPTS = (b">>> ", b"\n>", b"\x04>")  # friendly prompt; raw REPL prompt, after its banner or a command
RESTART = {10: "raw", 11: "boot", 12: "boot", 13: "boot"}  # soft (raw REPL), soft, machine.reset(), deepsleep
# machine.reset_cause() values of the ESP32 port
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
# ESP32 port (modmachine.c): ESP_RST_SW (machine.reset()) and ESP_RST_PANIC report HARD_RESET; a soft
# reboot (Ctrl-D, mpremote's soft reset) reports SOFT_RESET
CAUSE_AFTER = {10: SOFT_RESET, 11: SOFT_RESET, 12: HARD_RESET, 13: DEEPSLEEP_RESET}


def main(argv):
    d, mp, heapsize, blocks = Path(argv[0]), argv[1], argv[2], argv[3]
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline: bytes as a UART passes them
    os.set_blocking(master, False)
    pty_path = os.ttyname(slave)
    link = d / "tty"
    link.unlink(missing_ok=True)
    link.symlink_to(pty_path)
    console = open(d / "console.log", "ab", buffering=0)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))

    rom = d / "rom"
    cause = [PWRON_RESET]

    def spawn(mode):
        p = subprocess.Popen([mp, "-X", "heapsize=" + heapsize, str(HERE / "runtime.py"), str(d / "flash.img"),
                              blocks, mode, str(rom), str(cause[0])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, cwd=str(d), bufsize=0)
        os.set_blocking(p.stdout.fileno(), False)
        return p

    def write_state(ready):
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "pty": pty_path, "link": str(link), "ready": ready,
                                   "heapsize": heapsize, "blocks": int(blocks)}))
        tmp.replace(d / "state.json")

    child = spawn("boot")
    heard = False          # the interpreter is past mounting its flash: a Ctrl-C as SIGINT is safe
    waiting = False        # its last output was a REPL prompt and no input went to it since
    tail = b""
    pending_int = 0.0      # when a Ctrl-C came that the interpreter could not take yet (0: none)
    restarts = 0
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ, "pty")
    sel.register(child.stdout, selectors.EVENT_READ, "mp")
    write_state(True)

    def to_pty(data):
        try:
            os.write(master, data)
        except OSError as e:  # nobody reading and the tty queue is full: the log keeps everything
            if e.errno not in (errno.EAGAIN, errno.EIO):
                raise

    def say(text):
        msg = f"\r\nvboard: {text}\r\n".encode()
        console.write(msg)
        to_pty(msg)

    while not stopping:
        if pending_int and heard:
            # a Ctrl-C from before the interpreter was up: nothing to interrupt once it sits at a prompt;
            # if it is still busy a moment later (main.py runs), interrupt it. A signal that landed while
            # the REPL reads could lose the byte it just read.
            if waiting:
                pending_int = 0.0
            elif time.monotonic() - pending_int > 0.3 and child.poll() is None:
                pending_int = 0.0
                child.send_signal(signal.SIGINT)
        if (rom / "power.cut").exists():  # the host cut the power: no clean anything, power-on afterwards
            (rom / "power.cut").unlink()
            if child.poll() is None:
                child.kill()
                cause[0] = PWRON_RESET
                say("power cut: power-on")
        if (rom / "wdt.expired").exists() and child.poll() is None:
            (rom / "wdt.expired").unlink()
            child.kill()  # its stdout closes: the restart below sees WDT_RESET
            cause[0] = WDT_RESET
            say("watchdog timeout: resetting")
        for key, _ in sel.select(timeout=0.1):
            if key.data == "pty":
                try:
                    data = os.read(master, 4096)
                except OSError:
                    continue
                parts = data.split(b"\x03")
                for i, part in enumerate(parts):
                    if part and child.poll() is None:
                        if part.strip(b"\r\n"):  # a bare Enter only brings the prompt back
                            waiting = False
                        try:
                            child.stdin.write(part)
                        except BrokenPipeError:
                            pass
                    if i < len(parts) - 1:  # a Ctrl-C
                        if waiting and child.poll() is None:
                            # at a prompt the REPL reads it as a key: a signal could land after the REPL
                            # has read the next byte and lose that byte (mpremote's \x04 once)
                            try:
                                child.stdin.write(b"\x03")
                            except BrokenPipeError:
                                pass
                        elif heard and child.poll() is None:
                            child.send_signal(signal.SIGINT)
                        else:
                            pending_int = pending_int or time.monotonic()
            else:
                try:
                    data = child.stdout.read(65536)
                except BlockingIOError:
                    continue
                if data:
                    console.write(data)
                    to_pty(data)
                    tail = (tail + data)[-64:]  # output arrives in any chunks: look at its last bytes
                    waiting = tail.endswith(PROMPTS)  # the REPL waits for input, nothing sent since
                    # past mounting the flash, a KeyboardInterrupt is caught (boot, REPL): signals may go
                    heard = heard or waiting or b"vboard: boot" in tail
                    continue
                # the interpreter ended: reset (restart) or crash (restart after a pause, like a watchdog)
                sel.unregister(child.stdout)
                rc = child.wait()
                mode = RESTART.get(rc)
                if cause[0] in (WDT_RESET, PWRON_RESET) and rc < 0:  # killed by us: watchdog or power cut
                    mode = "boot"
                elif mode is None:
                    say(f"interpreter exited with code {rc}; rebooting in 1 s")
                    time.sleep(1)
                    mode = "boot"
                    cause[0] = HARD_RESET  # as a panic reboot reports
                elif rc in CAUSE_AFTER:
                    cause[0] = CAUSE_AFTER[rc]
                if rc == 13:
                    ms = _sleep_ms(rom)
                    say(f"deep sleep for {ms} ms" if ms is not None else "deep sleep with no timer: "
                        "'sensorpub vboard stop' and start again to power-cycle")
                    end = time.monotonic() + (ms / 1000 if ms is not None else 1e9)
                    while not stopping and time.monotonic() < end:
                        time.sleep(min(0.05, max(0, end - time.monotonic())))
                restarts += 1
                child = spawn(mode)
                heard = waiting = False
                tail = b""
                sel.register(child.stdout, selectors.EVENT_READ, "mp")
    if child.poll() is None:
        child.kill()
        child.wait()
    link.unlink(missing_ok=True)
    (d / "state.json").unlink(missing_ok=True)


def _sleep_ms(rom: Path) -> Optional[int]:
    """How long machine.deepsleep() sleeps: {"ms": N}; {"ms": null} means until power-off (None)."""
    try:
        ms = json.loads((rom / "sleep.json").read_text())["ms"]
        return None if ms is None else max(0, int(ms))
    except (OSError, ValueError, KeyError, TypeError):
        return 0


if __name__ == "__main__":
    main(sys.argv[1:])
