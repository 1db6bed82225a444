"""A programming error is not a lost link: its traceback reaches the console once, it is counted, and the
firmware backs off (growing windows) instead of reconnecting at full speed or hiding it as a link loss."""
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "host_tools" / "vboard" / "frozen" / "umqtt"

# appended to a copy of the stand-in: publish fails the way a str/bytes mix-up does on MicroPython
BROKEN_PUBLISH = '''

def _broken_publish(self, topic, msg, retain=False, qos=0):
    raise TypeError("can't convert 'str' object to bytes implicitly")


MQTTClient.publish = _broken_publish
'''


@pytest.fixture
def umqtt(tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(STANDIN, d / "umqtt", ignore=shutil.ignore_patterns("__pycache__"))
    with open(d / "umqtt" / "simple.py", "a") as f:
        f.write(BROKEN_PUBLISH)
    return str(d)


def test_type_error_is_a_loud_bug_with_backoff_not_a_lost_link(flashed):
    con = flashed(backoff_cap_s=4)
    found = con.expect(r"ERROR publishing: BUG TypeError [^\n]*, (\d+) so far; reconnect in ([\d.]+) s "
                       r"\(attempt (\d+), window (\d+) s\)|ERROR announcing online: BUG TypeError [^\n]*, (\d+) so far; "
                       r"reconnect in ([\d.]+) s \(attempt (\d+), window (\d+) s\)", timeout=30, count=4)
    text = con.text()
    windows = [int(m.group(4) or m.group(8)) for m in found]
    assert windows[:3] == [1, 2, 4], (windows, con.evidence())  # backs off: not full speed
    counts = [int(m.group(1) or m.group(5)) for m in found]
    assert counts == sorted(counts) and counts[-1] >= 4  # counted
    assert text.count("Traceback (most recent call last)") == 1, con.evidence()  # loud, once
    assert re.search(r"ERROR BUG while announcing online \(not a link failure", text)
    assert "TypeError: can't convert 'str' object to bytes implicitly" in text
    assert "link lost" not in text, con.evidence()  # never disguised as a link loss
