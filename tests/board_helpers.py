"""A device handle for tests: the virtual board by default, a real board with --port (hardware tests)."""
import json
import re
import subprocess
import sys
import threading
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


class Operator:
    """The verifier identity (one client: the broker allows one session per certificate CN): writes dev1's
    config or certificate topic, and records dev1's retained status documents and readings."""

    def __init__(self, fleet, port, con):
        from helpers import client_for
        self.docs, self.uptimes, self.seqs, self.cond, self.con = [], [], [], threading.Condition(), con
        self.c = client_for(fleet, "verifier", port)
        self.c.on_message = self._on
        self.c.subscribe([("devices/dev1/status", 1), ("devices/dev1/telemetry", 1)])

    def _on(self, _c, _u, m):
        with self.cond:
            if m.topic.endswith("/status"):
                self.docs.append(json.loads(m.payload))
            else:
                from host_tools.verify import validate
                r, why = validate(m.topic, m.payload)
                assert why is None, why
                self.uptimes.append(r["uptime_s"])
                self.seqs.append(r["seq"])
            self.cond.notify_all()

    def send(self, version, keys):
        self.c.publish("devices/dev1/config", json.dumps({"version": version, "set": keys}), qos=1,
                       retain=True).wait_for_publish(5)

    def put_cert(self, der):
        self.c.publish("devices/dev1/cert", der, qos=1, retain=True).wait_for_publish(5)

    def next_seq(self, timeout=30):
        """The seq of dev1's next reading to arrive."""
        with self.cond:
            n = len(self.seqs)
            assert self.cond.wait_for(lambda: len(self.seqs) > n, timeout), self.con.evidence()
            return self.seqs[n]

    def wait(self, pred, timeout=20):
        with self.cond:
            assert self.cond.wait_for(lambda: any(pred(d) for d in self.docs), timeout), \
                f"{self.docs}\n{self.con.evidence()}"
            return next(d for d in reversed(self.docs) if pred(d))

    def mark(self):
        """A place in dev1's readings for spacing(since=...): the next reading to arrive."""
        with self.cond:
            return len(self.uptimes)

    def spacing(self, n=3, since=None):
        """Seconds between dev1's n readings (uptime_s) after the next one, or after the one at mark() `since`."""
        with self.cond:
            start = (len(self.uptimes) if since is None else since) + 1  # that one may have been taken before: skip it
            assert self.cond.wait_for(lambda: len(self.uptimes) >= start + n, 30), self.con.evidence()
            got = self.uptimes[start:start + n]
        return [b - a for a, b in zip(got, got[1:])]
