"""A device handle for tests: the virtual board by default, a real board with --port (hardware tests)."""
import re
import subprocess
import sys
import time
from pathlib import Path


class Console:
    """Reads a virtual board's console log; expect() fails with the console tail and the broker log."""

    def __init__(self, vboard, broker=None):
        self.vb = vboard
        self.broker = broker
        self.start = self.size()

    def size(self):
        p = self.vb.console_log
        return p.stat().st_size if p.exists() else 0

    def mark(self):
        self.start = self.size()

    def text(self):
        with open(self.vb.console_log, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace").replace("\r", "")

    def since_boot(self):
        """Console text since the board last booted (after the reset a test caused)."""
        t = self.text()
        return t[t.rfind("vboard: boot"):]

    def evidence(self):
        tail = "\n".join(self.text().splitlines()[-40:])
        out = f"--- console tail ---\n{tail}\n"
        if self.broker and self.broker.log_file.exists():
            out += "--- broker log tail ---\n" + "\n".join(self.broker.log_file.read_text().splitlines()[-15:])
        return out

    def expect(self, pattern, timeout=20.0, count=1):
        """Wait until `pattern` (regex) matched `count` times since the mark; return the matches."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.text()))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"console: {pattern!r} x{count} not seen within {timeout} s "
                                     f"(seen {len(found)})\n{self.evidence()}")
            time.sleep(0.1)


def mpremote(port, *args, timeout=30):
    """The real mpremote CLI, unmodified."""
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args], capture_output=True,
                          text=True, timeout=timeout)
