"""A real local Mosquitto per fleet: start, stop, reload, and is it (still) running.

What it runs with (mTLS on 8883, certificate CN as username and client id, per-device ACL, CRL,
TLS 1.2+ with ECDHE + AEAD only, size and queue limits) is mosquitto_conf.py's. The run directory
(run/broker-<fleet>/, 0700) holds mosquitto.conf, acl, tls/, the log, the pid file and persistence.
"""
import errno
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from . import mosquitto_conf
from .contract import DEFAULT_PORT
from .errors import CommandError
from .fleet import Fleet
from .keys import write_file
from .paths import run_dir



@dataclass
class Broker:
    fleet: str
    port: int = DEFAULT_PORT
    bind: str = "127.0.0.1"
    acl: Optional[str] = None  # ACL text; mosquitto_conf.default_acl() when None
    server_fleet: str = ""     # take the server certificate from this fleet's PKI (a separate root), not ours
    bind_client_id: bool = True  # client id := certificate CN; off for the AWS stand-in, whose policy ACL checks %c
    notes: List[str] = field(default_factory=list)  # what start() did on the side, for the CLI to say

    @property
    def dir(self) -> Path:
        return run_dir("broker-" + self.fleet)

    @property
    def pid_file(self) -> Path:
        return self.dir / "mosquitto.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "mosquitto.log"

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    def config(self) -> str:
        """Stage the ACL and the TLS files, and return mosquitto.conf's text."""
        return mosquitto_conf.render(self, mosquitto_conf.stage(self))

    def reload(self) -> bool:
        """Re-stage the ACL, CRL and certificates and make a running broker load them (SIGHUP)."""
        pid = self.pid()
        if not pid:
            return False
        acl = self.dir / "acl"  # a custom ACL (the AWS rehearsal's) is the running broker's own: keep it
        mosquitto_conf.stage(self, acl=not acl.exists() or acl.read_text().startswith(mosquitto_conf.ACL_HEADER))
        before = self._log_text().count("Reloading config.")
        os.kill(pid, signal.SIGHUP)
        # mosquitto logs the line, reloads, then serves the next connection: one handshake after it means done
        deadline = time.monotonic() + 5
        while self._log_text().count("Reloading config.") <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        port, bind = self.listener() or (self.port, self.bind)
        _tls_ready(bind, port, Fleet(self.fleet), Fleet(self.server_fleet or self.fleet))
        return True

    def listener(self) -> Optional[tuple]:
        """(port, address) the running config listens on, from mosquitto.conf; None without one."""
        conf = self.dir / "mosquitto.conf"
        if not conf.exists():
            return None
        for ln in conf.read_text().splitlines():
            if ln.startswith("listener "):
                _, port, bind = ln.split()
                return int(port), bind
        return None

    def _log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def pid(self) -> Optional[int]:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        if _is_zombie(pid) or not _is_mosquitto(pid):  # killed and not yet reaped, or the pid was reused
            return None
        return pid

    def start(self, timeout: float = 10.0, progress=lambda m: None) -> int:
        if self.pid():
            raise CommandError(f"the broker for fleet {self.fleet!r} is already running (pid {self.pid()}): "
                               "'sensorpub broker stop' first")
        exe = find_mosquitto()
        _check_port_free(self.bind, self.port)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(self.config())
        if self.log_file.exists():  # keep the previous run's log (a crash is worth reading) as .1
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        write_file(self.log_file, b"", private=True)
        pw = mosquitto_conf.drop_user()
        if pw:
            os.chown(self.log_file, pw.pw_uid, pw.pw_gid)
        progress(f"starting mosquitto for fleet {self.fleet!r} on {self.bind}:{self.port}")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(self.dir / "stderr.log", "wb"), start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise CommandError(f"mosquitto exited at start: {self._last_error()} (log: {self.log_file})")
            if _tls_ready(self.bind, self.port, Fleet(self.fleet), Fleet(self.server_fleet or self.fleet)):
                return proc.pid
            time.sleep(0.05)
        self.stop()
        raise CommandError(f"mosquitto did not accept TLS on {self.bind}:{self.port} within {timeout:.0f} s "
                           f"(log: {self.log_file})")

    def _last_error(self) -> str:
        text = ""
        for p in (self.dir / "stderr.log", self.log_file):
            if p.exists():
                text += p.read_text(errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errs = [ln for ln in lines if "rror" in ln] or lines
        return errs[-1] if errs else "no message"

    def kill(self) -> bool:
        """SIGKILL, as a crash or power cut would end it: no clean shutdown, no final save."""
        pid = self.pid()
        if not pid:
            return False
        os.kill(pid, signal.SIGKILL)
        while not _is_zombie(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        self.pid_file.unlink(missing_ok=True)
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        pid = self.pid()
        if not pid:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                if _is_zombie(pid):
                    break
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def find_mosquitto() -> str:
    """$SENSORPUB_MOSQUITTO, else mosquitto on PATH or in the usual sbin folders."""
    exe = os.environ.get("SENSORPUB_MOSQUITTO")
    if exe:
        if not os.access(exe, os.X_OK):
            raise CommandError(f"SENSORPUB_MOSQUITTO={exe} is not an executable: point it at the mosquitto binary")
        return exe
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
                                             if os.access(p, os.X_OK)), None)
    if not exe:
        raise CommandError("mosquitto is not installed: run 'make setup' or 'apt-get install mosquitto'")
    return exe


def _is_mosquitto(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        return b"mosquitto" in cmd or not cmd  # empty: still exiting after a kill, its port not yet free
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (macOS): trust the pid file


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def _check_port_free(host: str, port: int) -> None:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except PermissionError:
        raise CommandError(f"port {port} needs privileges on {host}: choose --port above 1023") from None
    except socket.gaierror:
        raise CommandError(f"--bind {host!r} is not an address: give an IP of this machine, e.g. 127.0.0.1 or 0.0.0.0") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise CommandError(f"port {port} on {host} is already in use: stop what holds it or pass --port N") from None
        raise CommandError(f"cannot listen on {host}:{port} ({e.strerror}): --bind must be an address of this "
                           "machine, e.g. 127.0.0.1 or 0.0.0.0") from None
    finally:
        s.close()


def _tls_ready(host: str, port: int, fleet: Fleet, server_fleet: Fleet) -> bool:
    """True once the listener completes a TLS handshake (server verified against its CA)."""
    ctx = ssl.create_default_context(cafile=str(server_fleet.ca_cert))
    ctx.check_hostname = False  # the server cert may name another host; the chain is still verified
    v = fleet.verifier_dir
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((host, port), timeout=1) as raw:
            if not (v / "verifier.pem").exists():
                return True  # without a client identity the handshake cannot finish: a TCP accept will do
            ctx.load_cert_chain(v / "verifier.pem", v / "verifier.key.pem")
            with ctx.wrap_socket(raw):
                return True
    except (OSError, ssl.SSLError):
        return False
