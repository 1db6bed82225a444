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
