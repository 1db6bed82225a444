"""`make bench`: figures for the device path on this machine (virtual board, real Mosquitto, mTLS).

Prints: flash time and size (.py and .mpy), time to first delivered reading after reset,
1,000 fast cycles under -X heapsize=64k with the live heap after gc.collect() every 100 cycles, and
TLS records per MQTT packet with connect/publish times against umqtt.simple on a bare SSLContext
(tools/bench_tls.py), for every real umqtt.simple in $UMQTT_VERSIONS, and the outbox's flash wear against
the ring file it replaced (tools/bench_wear.py).
"""
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    home = tempfile.mkdtemp(prefix="sensorpub-bench-")
    os.chmod(home, 0o711)  # a broker started by root runs as mosquitto, which must be able to enter it
    os.environ["SENSORPUB_HOME"] = home
    from host_tools import pki
    from host_tools.broker import Broker
    from host_tools.flash import build_config, flash
    from host_tools.vboard import VBoard
    pki.init_ca("demo"); pki.issue_server("demo", [], []); pki.issue_verifier("demo"); pki.issue_device("demo", "dev1")
    b = Broker("demo", port=free_port()); b.start()
    vb = VBoard("bench"); vb.start(heapsize="64k", erase=True)
    log = vb.console_log
    try:
        for mpy in (False, True):
            t = time.monotonic()
            files = flash("vboard:bench", "demo", "dev1", "unix", build_config("dev1", "localhost", b.port, 3600),
                          mpy=mpy)
            print(f"flash ({'.mpy' if mpy else '.py '}): {len(files)} files, {sum(map(len, files.values()))} bytes "
                  f"in {time.monotonic() - t:.2f} s (write + SHA-256 read-back + reset)")
        start = log.stat().st_size
        t = time.monotonic()
        while "published seq" not in log.read_bytes()[start:].decode(errors="replace"):
            time.sleep(0.02)
        print(f"reset to first acknowledged reading (.mpy, mTLS handshake included): {time.monotonic() - t:.2f} s")
        start = log.stat().st_size
        flash("vboard:bench", "demo", "dev1", "unix",
              build_config("dev1", "localhost", b.port, 0, {"max_cycles": 1000}), mpy=True)
        t = time.monotonic()
        while "done cycles=" not in (text := log.read_bytes()[start:].decode(errors="replace")):
            if time.monotonic() - t > 300:
                sys.exit("bench: 1000 cycles did not finish in 300 s")
            time.sleep(0.1)
        secs = time.monotonic() - t
        stats = re.findall(r"stats cycles=(\d+) .*heap_free=(\d+) heap_alloc=(\d+)", text)
        print(f"1000 cycles (read, outbox on flash, QoS 1 publish over TLS) in {secs:.1f} s: "
              f"{1000 / secs:.0f} readings/s, {1000 * secs / 1000:.1f} ms each")
        print("heap 64k, after gc.collect(): cycle  free  alloc")
        for c, f, a in stats:
            print(f"  {int(c):>5}  {f}  {a}")
        print(f"MemoryError: {'yes' if 'MemoryError' in text else 'no'}; "
              f"heap growth cycle 200 -> 1000: {int(stats[-1][2]) - int(stats[1][2])} bytes")
        vb.stop()
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_wear
        bench_wear.main()
        import bench_tls
        bench_tls.main(pki.Fleet("demo").device_dir("dev1"), b.port)
    finally:
        vb.stop()
        b.stop()


if __name__ == "__main__":
    main()
