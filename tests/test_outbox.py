"""The flash outbox under the Unix-port MicroPython: resizing keeps seq and the newest readings, and an
outbox left by another identity is never sent under the new one."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_resize_keeps_seq_and_newest_readings_and_another_identity_starts_afresh(tmp_path):
    mp = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(mp), str(ROOT / "tests" / "mp" / "outbox_scenarios.py"), str(ROOT / "firmware"),
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["shrunk"] == [3, 6], got                 # 3 newest of 5 queued kept; seq goes on at 6
    assert got["grown"] == [[3, 4, 5], 6], got          # in order, nothing reused
    assert got["old_format"] == [1, 7], got             # a state file without owner still counts
    assert got["other_owner"] == [0, 0, []], got        # dev1's readings never go out as dev2
    assert "dropped the 2 oldest readings" in r.stdout
    assert "outbox held 1 readings of device 'dev1': discarded" in r.stdout
