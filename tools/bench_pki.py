"""Batch provisioning speed: device identities per second, `sensorpub pki device --count N` against openssl.

Both make the same identity (EC P-256 key, client certificate signed by the fleet CA with the same extensions,
PEM and DER of key and certificate) in the same run, on the same CA:

- openssl, the usual script: per identity `genpkey`, `req -new`, `x509 -req -CA`, then `x509 -outform DER` and
  `pkey -outform DER` for the board: 5 processes, run by bash for `openssl_count` identities;
- sensorpub, the real CLI as a user runs it (a new process, start-up included) making `count` identities,
  `repeat` times (the median is reported);
- the library call alone (batch.issue_devices in this process), for reference.

`python tools/bench_pki.py [--count 1000] [--openssl 50] [--dir DIR]` prints the figures; `run()` returns them
(for tools/bench.py). Creating files is most of what the batch does, so the file system matters: ext4 will
not reuse an inode deleted in the last 30-300 s, and scans past them, so right after thousands of files were
deleted (a test run, the end of a previous bench run) new files cost tens of times more. Let it rest a few
minutes between runs.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLEET = "bench"
OPENSSL_STEPS = ("genpkey", "req -new", "x509 -req", "x509 -outform DER", "pkey -outform DER")
EXTENSIONS = """[v3]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = URI:urn:sensorpub:bench:$ENV::NAME
"""
SCRIPT = """set -e
umask 077
for n in "$@"; do
  d=out/$n; mkdir -p "$d"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/client.key.pem"
  openssl req -new -key "$d/client.key.pem" -subj "/O=sensorpub/OU=bench/CN=$n" -out "$d/client.csr"
  NAME=$n openssl x509 -req -in "$d/client.csr" -CA ca.pem -CAkey ca.key.pem -days 365 -sha256 \\
    -extfile ext.cnf -extensions v3 -out "$d/client.pem" 2>/dev/null
  openssl x509 -in "$d/client.pem" -outform DER -out "$d/client.der"
  openssl pkey -in "$d/client.key.pem" -outform DER -out "$d/client.key.der"
done
"""


def _cli() -> list:
    """The `sensorpub` a user runs: the venv's entry point next to this Python, else `python -m host_tools`."""
    script = Path(sys.executable).parent / "sensorpub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "host_tools"]


def _sensorpub(env: dict, *args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([*_cli(), *args, "--fleet", FLEET], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"sensorpub {' '.join(args)} failed: {r.stderr.strip().splitlines()[-1:]}")
    return secs


def _openssl(home: Path, count: int) -> float:
    """Seconds for `count` identities made the openssl way, with the fleet's own CA."""
    if not shutil.which("openssl"):
        raise RuntimeError("openssl is not on PATH: install it (Debian/Ubuntu: apt-get install openssl)")
    work = home / "openssl"
    work.mkdir()
    ca = home / "certs" / FLEET / "ca"
    shutil.copy(ca / "ca.pem", work / "ca.pem")
    shutil.copy(ca / "ca.key.pem", work / "ca.key.pem")
    (work / "ext.cnf").write_text(EXTENSIONS)
    (work / "make.sh").write_text(SCRIPT)
    names = [f"ossl{i:03d}" for i in range(1, count + 1)]
    t = time.perf_counter()
    r = subprocess.run(["bash", "make.sh", *names], cwd=work, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"the openssl script failed: {r.stderr.strip().splitlines()[-1:]}")
    _check_openssl_identity(work / "out" / names[-1])
    return secs


def _check_openssl_identity(d: Path) -> None:
    """The openssl identity is the same kind as ours: it verifies against the CA, its DER key is its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    r = subprocess.run(["openssl", "verify", "-CAfile", "../../ca.pem", "client.pem"], cwd=d, capture_output=True)
    cert = x509.load_der_x509_certificate((d / "client.der").read_bytes())
    key = serialization.load_der_private_key((d / "client.key.der").read_bytes(), None)
    if r.returncode != 0 or cert.public_key() != key.public_key():
        raise RuntimeError(f"the openssl script made a bad identity in {d}")


def _library(home: Path, count: int) -> float:
    """Seconds for batch.issue_devices alone, in this process (no start-up)."""
    old = os.environ.get("SENSORPUB_HOME")
    os.environ["SENSORPUB_HOME"] = str(home)
    try:
        from host_tools import batch
        names = batch.numbered(count, prefix="lib")
        t = time.perf_counter()
        batch.issue_devices(FLEET, names)
        return time.perf_counter() - t
    finally:
        if old is None:
            del os.environ["SENSORPUB_HOME"]
        else:
            os.environ["SENSORPUB_HOME"] = old


def run(count: int = 1000, openssl_count: int = 50, repeat: int = 3, where=None) -> dict:
    """Measure both ways in a scratch SENSORPUB_HOME (in `where`, default the system's temporary folder);
    returns the figures (identities per second, ratio)."""
    home = Path(tempfile.mkdtemp(prefix="sensorpub-bench-pki-", dir=where))
    env = dict(os.environ, SENSORPUB_HOME=str(home))
    try:
        _sensorpub(env, "pki", "init")
        ossl = _openssl(home, openssl_count)
        ours = [_sensorpub(env, "pki", "device", "--count", str(count), "--prefix", f"run{i}-dev")
                for i in range(repeat)]
        lib = _library(home, count)
        made = sum(1 for d in (home / "certs" / FLEET / "devices").iterdir() if not d.name.startswith("."))
        if made != count * (repeat + 1):
            raise RuntimeError(f"expected {count * (repeat + 1)} identities, found {made}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    median = statistics.median(ours)
    return {
        "openssl_identities": openssl_count, "openssl_seconds": ossl, "openssl_per_s": openssl_count / ossl,
        "openssl_processes_per_identity": len(OPENSSL_STEPS),
        "sensorpub_identities": count, "sensorpub_seconds": median, "sensorpub_runs_seconds": ours,
        "sensorpub_per_s": count / median, "library_per_s": count / lib,
        "ratio": (count / median) / (openssl_count / ossl),
    }


def report(r: dict) -> str:
    n = r["sensorpub_identities"]
    return "\n".join([
        f"openssl, {r['openssl_processes_per_identity']} processes per identity ({', '.join(OPENSSL_STEPS)}): "
        f"{r['openssl_identities']} in {r['openssl_seconds']:.2f} s = {r['openssl_per_s']:.1f} identities/s "
        f"({1000 * r['openssl_seconds'] / r['openssl_identities']:.0f} ms each; {n} would take "
        f"{n / r['openssl_per_s']:.0f} s)",
        f"sensorpub pki device --count {n} (one process, start-up included; median of "
        f"{len(r['sensorpub_runs_seconds'])}): {r['sensorpub_seconds']:.2f} s = {r['sensorpub_per_s']:.0f} identities/s",
        f"library call alone (batch.issue_devices, no start-up): {r['library_per_s']:.0f} identities/s",
        f"ratio: {r['ratio']:.0f}x the identities per second of openssl",
    ])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1000, help="identities per sensorpub run (default: 1000)")
    p.add_argument("--openssl", type=int, default=50, help="identities made with openssl (default: 50)")
    p.add_argument("--repeat", type=int, default=3, help="sensorpub runs; the median is reported (default: 3)")
    p.add_argument("--dir", help="where the scratch folder goes (default: the system's temporary folder)")
    args = p.parse_args()
    try:
        print(report(run(args.count, args.openssl, args.repeat, args.dir)))
    except RuntimeError as e:
        print(f"bench_pki: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
