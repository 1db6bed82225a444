"""The flash outbox under the Unix-port MicroPython: resizing keeps seq and the newest readings, an outbox
left by another identity is never sent under the new one, a cut mid-write loses nothing sent, and the
ring file of earlier firmware is migrated; its flash wear is measured on LittleFS."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_outbox_across_reboots_resizes_identities_cuts_and_the_old_layout(tmp_path):
    mp = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(mp), str(ROOT / "tests" / "mp" / "outbox_scenarios.py"), str(ROOT / "firmware"),
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["whole"] == {"device_id": "dev1", "seq": 1, "temp_c": 21.5}, got
    assert got["shrunk"] == [3, 6], got                 # 3 newest of 5 queued kept; seq goes on at 6
    assert got["grown"] == [[3, 4, 5], 6], got          # in order, nothing reused
    assert got["empty_reboot"] == 6, got                # an empty outbox still knows where seq stands
    assert got["raw"] == '{"not":"prefixed"}', got
    assert got["cut_mid_write"] == [0, 7], got          # the empty file is dropped, its seq (never sent) reused
    assert got["other_owner"] == [0, 0, []], got        # dev1's readings never go out as dev2
    assert got["migrated"] == [[7, 8], 9, [False, False]], got  # the old ring file's readings, seq kept
    assert "dropped the 2 oldest readings" in r.stdout
    assert "outbox held 1 readings of device 'dev1': discarded" in r.stdout


def test_a_reading_acknowledged_at_once_costs_at_most_a_tenth_of_a_block_erase():
    # counted on a RAM block device with LittleFS2 as on an ESP32 (4 KB blocks); the ring file it replaced
    # cost 9.5 erases a reading. `make bench` prints the figure against that reference
    mp = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(mp), "-X", "heapsize=4m", str(ROOT / "tools" / "mp_outbox_wear.py"), str(ROOT / "firmware"),
                        "300"], capture_output=True, text=True, timeout=120)
    got = json.loads(r.stdout.split("RESULT", 1)[1])
    assert got["erases_per_reading"] <= 0.12, got
