"""`make bench`: one table of figures for this machine, each measured side by side with what it is compared
to in the same run, printed and written as JSON (build/bench.json).

Rows: provisioning vs the openssl pattern (bench_pki.py); TLS records and bytes per reading vs umqtt.simple
on a bare SSLContext and vs the TLS 1.2 AES-GCM + MQTT 3.1.1 floor (bench_tls.py); connect and publish
times vs paho-mqtt on the same broker (bench_paho.py); the smallest heap as .mpy vs .py and backlog drain
with vs without the TCP probe (bench_recovery.py); flash erases per reading vs the ring-file outbox
(bench_wear.py); battery mode's awake time and TLS handshakes per reading, publish_every 10 vs 1, and
remote config's change-to-answer time vs a re-flash (bench_battery.py); a short fleet run, lean boards vs one supervisor per board (bench_fleet.py, when present).
BENCH_QUICK=1 skips the slow rows (long outage, fleet). Figures only: nothing here passes or fails.
"""
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROWS: list = []


def row(figure: str, ours: float, ref: float, unit: str, compared: str, better: str = "lower") -> None:
    """better: 'lower' (ratio = ref/ours, how many times less) or 'higher' (ratio = ours/ref)."""
    ratio = (ref / ours if better == "lower" else ours / ref) if ours and ref else None
    ROWS.append({"figure": figure, "sensorpub": round(ours, 3), "reference": round(ref, 3), "unit": unit,
                 "ratio": round(ratio, 2) if ratio else None, "compared_with": compared})
    print(f"  {figure}: {ours:.3g} vs {ref:.3g} {unit}" + (f" ({ratio:.2f}x)" if ratio else ""), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_rows(device_dir: Path, port: int, ca: Path) -> None:
    import bench_paho
    import bench_tls
    from host_tools.umqtt_versions import install_umqtt, real_versions
    versions = sorted(real_versions(), key=lambda v: tuple(map(int, v.split("."))))
    source = f"real-{versions[-1]}" if versions else "standin"
    with tempfile.TemporaryDirectory() as t:
        desc = install_umqtt(Path(t), source)
        bare = bench_tls.run("bare", Path(t), device_dir, port)
        ours = bench_tls.run("session", Path(t), device_dir, port)
    lib = f"umqtt.simple {desc.split()[1]} on a bare SSLContext"
    row("TLS records per MQTT packet", ours["records_per_packet"], bare["records_per_packet"], "records", lib)
    floor = 29 + 2 + 2 + len("devices/dev1/telemetry") + 2 + len(bench_paho.MSG)  # TLS 1.2 GCM record + PUBLISH
    row("bytes sent per reading", ours["bytes_up_per_reading"], bare["bytes_up_per_reading"], "bytes", lib)
    row("bytes sent per reading vs the floor", ours["bytes_up_per_reading"], floor, "bytes",
        "one TLS 1.2 AES-GCM record (29 B) holding one MQTT 3.1.1 QoS 1 PUBLISH", better="higher")
    paho = bench_paho.run(ca, device_dir, port)
    row("CONNECT + retained online, to PUBACK", ours["connect_ms"], paho["connect_ms"], "ms",
        "paho-mqtt 2 (CPython) on the same broker and identity (median of 5)")
    row("one QoS 1 publish, to PUBACK", ours["publish_ms"], paho["publish_ms"], "ms",
        "paho-mqtt 2 (CPython), same broker, same reading")


def main() -> None:
    home = tempfile.mkdtemp(prefix="sensorpub-bench-")
    os.chmod(home, 0o711)  # a broker started by root runs as mosquitto, which must be able to enter it
    os.environ["SENSORPUB_HOME"] = home
    from host_tools import pki
    from host_tools.broker import Broker
    pki.init_ca("demo")
    pki.issue_server("demo", [], [])
    pki.issue_verifier("demo")
    pki.issue_device("demo", "dev1")
    f = pki.Fleet("demo")
    b = Broker("demo", port=free_port())
    b.start()
    t0 = time.monotonic()
    try:
        print("provisioning (1,000 identities vs 30 with openssl):", flush=True)
        import bench_pki
        p = bench_pki.run(count=1000, openssl_count=30, repeat=1)
        row("device identities per second", p["sensorpub_per_s"], p["openssl_per_s"], "identities/s",
            f"openssl, {p['openssl_processes_per_identity']} processes per identity", better="higher")
        print("wire and latency:", flush=True)
        tls_rows(f.device_dir("dev1"), b.port, f.ca_cert)
        print("outbox flash wear:", flush=True)
        import bench_wear
        w = bench_wear.figures()
        if w["ring_file"]:
            row("flash block erases per reading", w["ours"]["erases_per_reading"],
                w["ring_file"]["erases_per_reading"], "erases", f"ring-file outbox ({bench_wear.REFERENCE})")
        print("heap (smallest -X heapsize that runs 300 readings):", flush=True)
        import bench_recovery
        say = lambda m: print("   ", m, flush=True)  # noqa: E731
        mpy = bench_recovery.heap_floor(b, mpy=True, progress=say)
        py = bench_recovery.heap_floor(b, mpy=False, high=160, progress=say)
        row("smallest heap", mpy, py, "KB", "the same firmware as .py (compiled on the board)")
        print("backlog drain after the broker returns (a reading a second):", flush=True)
        outages = (10,) if QUICK else (10, 100)
        for outage in outages:
            probe = bench_recovery.drain(b, outage, probe_s=3)
            plain = bench_recovery.drain(b, outage, probe_s=0)
            row(f"drain {probe['readings_drained']} readings after a {outage} s outage", probe["drain_s"],
                plain["drain_s"], "s", "back-off window alone (probe_s 0), same outage")
        print("battery mode (deep sleep, a reading a second, 20 readings) and remote config:", flush=True)
        import bench_battery
        one = bench_battery.battery(b, every=1)
        ten = bench_battery.battery(b, every=10)
        row("battery: awake time per reading", ten["awake_ms_per_reading"], one["awake_ms_per_reading"], "ms",
            "publish_every 1 (a connection every wake); ours: publish_every 10")
        row("battery: TLS handshakes per reading", ten["handshakes_per_reading"], one["handshakes_per_reading"],
            "handshakes", "publish_every 1; ours: publish_every 10")
        rc = bench_battery.remote_config(b)
        row("remote config: change to the device's answer", rc["config_set_s"], rc["flash_s"], "s",
            "'sensorpub flash' with the same change (median of 3 config sets)")
        fleet_rows()
    finally:
        b.stop()
    out = ROOT / "build" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": os.uname().machine,
                               "cpus": os.cpu_count(), "rows": ROWS}, indent=2))
    print(f"\n{'figure':<46}{'sensorpub':>11}{'reference':>11}  {'unit':<13}{'ratio':>7}  compared with")
    for r in ROWS:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        print(f"{r['figure']:<46}{r['sensorpub']:>11.3g}{r['reference']:>11.3g}  {r['unit']:<13}{ratio:>7}  "
              f"{r['compared_with']}")
    print(f"\n(ratio: how many times better sensorpub is; {time.monotonic() - t0:.0f} s; JSON in {out})")


def fleet_rows() -> None:
    if QUICK or not (HERE / "bench_fleet.py").exists():
        return
    import bench_fleet
    print("fleet (30 boards, 2 minutes, a reading every 30 s):", flush=True)
    lean = bench_fleet.run(count=30, minutes=2)
    legacy = bench_fleet.run(count=30, minutes=2, legacy=True)
    row("fleet: readings delivered", lean["delivered_pct"], legacy["delivered_pct"], "%",
        "the same fleet with one supervisor process per board", better="higher")
    row("fleet: memory per board", lean["rss_mb_per_board"], legacy["rss_mb_per_board"], "MB",
        "one supervisor process per board")
    row("fleet: CPU per board", lean["cpu_pct_per_board"], legacy["cpu_pct_per_board"], "% of a core",
        "one supervisor process per board")


if __name__ == "__main__":
    main()
