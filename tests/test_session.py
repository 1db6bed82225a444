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
