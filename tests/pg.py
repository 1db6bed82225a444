"""A real PostgreSQL server for the store's tests: initdb into a temporary folder, run on a free port of
127.0.0.1 with password authentication, stopped (pg_ctl stop -m immediate) at teardown.

initdb refuses root, so under root the server runs as the `postgres` OS user (runuser), which owns the
folder. The binaries are looked up in /usr/lib/postgresql/*/bin (Debian's `postgresql` package); with none
the test fails, since CI installs that package.
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PASSWORD = "pg-Secret-42"   # tests check that no message ever shows it
USER = "sensorpub"


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in Path(p).parts[-3].split(".") if x.isdigit()])
    if not found:
        pytest.fail("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install Debian's "
                    "'postgresql' package (apt-get install postgresql), as .ci/run does")
    return Path(found[-1]).parent


class PgServer:
    def __init__(self):
        from conftest import free_port
        self.bin = bin_dir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sensorpub-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_user = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, and there is no 'postgres' OS user to run the PostgreSQL server as: "
                            "install Debian's 'postgresql' package")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.dir, 0o700)
        self.proc = None

    def _run(self, *cmd, timeout=60):
        return subprocess.run(self.as_user + [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)

    def start(self, timeout=30.0):
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_user:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        r = self._run(self.bin / "initdb", "-D", self.data, "-U", USER, f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C")
        pwfile.unlink()
        assert r.returncode == 0, f"initdb failed: {r.stdout}\n{r.stderr}"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.as_user + [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                                "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                "-c", "shared_buffers=16MB", "-c", "max_connections=40"],
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while self._run(self.bin / "pg_isready", "-h", "127.0.0.1", "-p", self.port, "-t", "1").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text()[-2000:]
                self.stop()
                pytest.fail(f"PostgreSQL did not start on 127.0.0.1:{self.port}:\n{log}")
            time.sleep(0.1)
        return self

    def url(self, db="postgres", password=PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self._run(self.bin / "pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w")
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    s = PgServer()
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture
def pg_url(pg_server, request):
    """postgresql://... of a fresh, empty database on the test server."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50] + f"_{time.monotonic_ns()}"
    return pg_server.create_database(name[:63])
