"""TLS records per MQTT packet and connect latency: sensorpub's session layer vs umqtt.simple given the
SSLContext directly (the reference), with every umqtt.simple found, through a relay that counts the
TLS records the board sends. Run by `make bench` (tools/bench.py) or alone with a fleet and broker port.
"""
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
N = 20


class RecordCounter:
    """A TCP relay to the broker that splits the board's byte stream into TLS records."""

    def __init__(self, broker_port: int):
        self.broker_port = broker_port
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.records: List[int] = []  # content type of each record the client sent
        self.sizes: List[int] = []    # bytes on the wire of each application-data record it sent
        self.closed = threading.Event()  # the client's side reached EOF: every record it sent is counted
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        c, _ = self.srv.accept()
        b = socket.create_connection(("127.0.0.1", self.broker_port))
        for s in (c, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._pipe, args=(b, c, False), daemon=True).start()
        self._pipe(c, b, True)

    def _pipe(self, src, dst, count):
        buf = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                if count:
                    self.closed.set()
                return
            dst.sendall(data)
            if count:
                buf += data
                while len(buf) >= 5:
                    typ, _ver, ln = struct.unpack("!BHH", buf[:5])
                    if len(buf) < 5 + ln:
                        break
                    self.records.append(typ)
                    if typ == 23:
                        self.sizes.append(5 + ln)
                    buf = buf[5 + ln:]


def run(mode: str, lib: Path, certs: Path, broker_port: int) -> Dict[str, float]:
    mp = Path(sys.executable).parent / "micropython"
    relay = RecordCounter(broker_port)
    r = subprocess.run([str(mp), str(ROOT / "tools" / "mp_tls_client.py"), mode, str(ROOT / "firmware"), str(lib),
                        str(certs), str(relay.port), str(N)], capture_output=True, text=True, timeout=60)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    if r.returncode or not line:
        raise SystemExit(f"bench_tls: {mode} with {lib} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    c_us, p_us = map(int, line[0].split()[1:])
    if not relay.closed.wait(10):  # the process has exited, but its last bytes may still be in the relay
        raise SystemExit(f"bench_tls: {mode}: the relay never saw the client close")
    app = relay.records.count(23)  # application data: the MQTT bytes
    # session: CONNECT, 'online' PUBLISH, N PUBLISH, DISCONNECT = N + 3 packets
    # bytes the client sends per reading: the N publishes' records (ours: one each; the reference: several)
    per_reading = sum(relay.sizes[-(len(relay.sizes) * N // (N + 3)) - 1:-1]) / N if relay.sizes else 0
    return {"records_per_packet": app / (N + 3), "connect_ms": c_us / 1000, "publish_ms": p_us / 1000 / N,
            "bytes_up_per_reading": per_reading}


def main(certs: Path, broker_port: int) -> None:
    from host_tools.umqtt_versions import install_umqtt, real_versions
    import tempfile
    sources = [f"real-{v}" for v in sorted(real_versions())] or ["standin"]
    print(f"TLS records per MQTT packet, {N} QoS 1 publishes: sensorpub's session layer vs umqtt.simple given the "
          "bare SSLContext (reference)")
    print(f"  {'umqtt.simple':<14}{'client':<11}{'records/packet':>15}{'connect+online ms':>19}{'publish ms':>12}")
    for src in sources:
        with tempfile.TemporaryDirectory() as t:
            desc = install_umqtt(Path(t), src)
            ref = run("bare", Path(t), certs, broker_port)
            ours = run("session", Path(t), certs, broker_port)
        version = desc.split()[1]
        for name, m in (("reference", ref), ("sensorpub", ours)):
            print(f"  {version if name == 'reference' else '':<14}{name:<11}{m['records_per_packet']:>15.2f}"
                  f"{m['connect_ms']:>19.1f}{m['publish_ms']:>12.2f}")
        print(f"  {'':<14}ratio reference/sensorpub: records {ref['records_per_packet'] / ours['records_per_packet']:.1f}x, "
              f"connect {ref['connect_ms'] / ours['connect_ms']:.1f}x, publish {ref['publish_ms'] / ours['publish_ms']:.1f}x")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
