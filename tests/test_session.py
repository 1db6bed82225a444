"""The session layer alone under the Unix-port MicroPython, with each umqtt.simple, against Mosquitto."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need_real, umqtt_params

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("source", umqtt_params())
def test_qos1_keeps_working_across_the_packet_id_limit(broker, fleet, tmp_path, source):
    from host_tools.umqtt_versions import install_umqtt
    need_real(source)
    install_umqtt(tmp_path, source)
    mp = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(mp), str(ROOT / "tests" / "mp" / "session_pid_wrap.py"), str(ROOT / "firmware"),
                        str(tmp_path), str(fleet.device_dir("dev1")), str(broker.port)],
                       capture_output=True, text=True, timeout=60)
    assert "RESULT [True, True, True, True] 1 " in r.stdout, r.stdout + r.stderr  # one connection, no loss
    assert int(r.stdout.split()[-1]) <= 3  # wrapped to 1, 2, 3


@pytest.mark.parametrize("source", umqtt_params())
def test_each_mqtt_packet_leaves_as_one_tls_record(broker, fleet, tmp_path, source):
    # the relay counts the TLS records the client sends; the bare client is the control that it counts
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_tls
    from host_tools.umqtt_versions import install_umqtt
    need_real(source)
    install_umqtt(tmp_path, source)
    certs = fleet.device_dir("dev1")
    ours = bench_tls.run("session", tmp_path, certs, broker.port)
    bare = bench_tls.run("bare", tmp_path, certs, broker.port)
    assert ours["records_per_packet"] == 1.0, ours
    assert bare["records_per_packet"] > 2, bare  # umqtt.simple alone: several records per packet


def test_each_common_link_failure_names_its_cause(tmp_path):
    import json
    from host_tools.umqtt_versions import install_umqtt
    install_umqtt(tmp_path, "standin")
    mp = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(mp), str(ROOT / "tests" / "mp" / "session_why.py"), str(ROOT / "firmware"), str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert "RESULT" in r.stdout, r.stdout + r.stderr
    why = json.loads(r.stdout.split("RESULT", 1)[1])
    assert why["refused"].startswith("connection refused: nothing listens there (broker down, or wrong broker_port)")
    assert why["dns"].startswith("broker host name not resolved (DNS)")
    for k in ("alloc", "enomem"):
        assert why[k].startswith("TLS could not allocate its buffers") and "GC heap free" in why[k], why[k]
    assert why["untrusted"].startswith("broker certificate not trusted")
    assert why["untrusted_no_clock"].startswith("clock not set (year "), why["untrusted_no_clock"]


def test_a_broker_hanging_up_at_each_first_publish_is_called_a_likely_denial(fleet, tmp_path):
    # what AWS IoT does when its policy denies a topic: CONNACK, then the connection closes at the publish.
    # A stand-in for AWS (it cannot run here): TLS with the fleet's server identity, MQTT CONNACK, then close.
    import socket
    import ssl
    import threading
    from host_tools.umqtt_versions import install_umqtt
    install_umqtt(tmp_path, "standin")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(fleet.ca_cert))
    ctx.load_cert_chain(str(fleet.server_dir / "server.pem"), str(fleet.server_dir / "server.key.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve():
        while True:
            try:
                raw, _ = srv.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(raw, server_side=True) as c:
                    head = c.recv(2)
                    c.recv(head[1])                # CONNECT
                    c.sendall(b"\x20\x02\x00\x00")  # CONNACK accepted
                    c.recv(1)                      # the first PUBLISH: hang up
            except (OSError, ssl.SSLError, IndexError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    mp = Path(sys.executable).parent / "micropython"
    try:
        r = subprocess.run([str(mp), str(ROOT / "tests" / "mp" / "session_denied.py"), str(ROOT / "firmware"),
                            str(tmp_path), str(fleet.device_dir("dev1")), str(port)],
                           capture_output=True, text=True, timeout=60)
    finally:
        srv.close()
    out = r.stdout + r.stderr
    assert "RESULT 3" in out, out
    assert out.count("likely denied by its policy or ACL") >= 2, out  # from the second time on
    first = next(ln for ln in out.splitlines() if "link lost while announcing online" in ln)
    assert "likely denied" not in first, out  # once may be a dropped link
