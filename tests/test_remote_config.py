"""Remote config on the real firmware (virtual board, real Mosquitto and its ACL, real paho), once per
umqtt.simple the board can have frozen: applied, kept across a reset, refused with the reason while the old
config stays, and never taken from another device's identity."""
import json

import pytest

from board_helpers import Operator, mpremote
from conftest import umqtt_params
from helpers import client_for


@pytest.fixture(params=umqtt_params())
def umqtt(request):
    return request.param


def test_remote_config_applied_kept_across_a_reset_refused_with_reasons_and_only_from_the_operator(
        flashed, fleet, broker, vboard):
    con = flashed(health_every=0)
    con.expect(r"published seq 1 ", timeout=20)
    op = Operator(fleet, broker.port, con)
    assert op.wait(lambda d: d["state"] == "online")["config"] == 0  # none yet
    # another device's identity cannot write dev1's config: the broker drops it (else 9 would win below)
    dev2 = client_for(fleet, "dev2", broker.port)
    dev2.publish("devices/dev1/config", json.dumps({"version": 9, "set": {"interval_s": 7}}), qos=1,
                 retain=True).wait_for_publish(5)
    dev2.disconnect()
    op.send(1, {"interval_s": 3})
    doc = op.wait(lambda d: d.get("config") == 1)
    assert "refused" not in doc and doc["state"] == "online", doc
    con.expect(r"remote config 1 applied", timeout=5)
    assert "remote config 9" not in con.text(), con.evidence()
    since = op.mark()  # readings from here on: every 3 s, through the refusals below

    # refused, each with its key and reason; config 1 stays in use
    for version, keys, key, reason in ((2, {"interval_s": 0}, "interval_s", "allowed 1 to 86400"),
                                       (3, {"colour": 1}, "colour", "unknown key"),
                                       (4, {"broker_host": "evil.example"}, "broker_host", "never changes over the air"),
                                       (5, {"interval_s": "60"}, "interval_s", "must be int"),
                                       (6, {"deep_sleep": True}, "deep_sleep", "this board cannot deep sleep")):
        op.send(version, keys)
        doc = op.wait(lambda d: d.get("refused", {}).get("version") == version)
        assert doc["config"] == 1 and doc["refused"]["key"] == key and reason in doc["refused"]["reason"], doc
        con.expect(rf"ERROR remote config {version} refused: {key}: [^\n]*{reason}[^\n]*; config 1 stays", timeout=5)
    gaps = op.spacing(since=since)
    assert all(2 <= s <= 4 for s in gaps), (gaps, con.evidence())  # every 3 s since config 1, not 1 s or 60 s

    # a reset: the board boots with config 7 from /remote.json (and the retained doc is not applied again)
    op.send(7, {"interval_s": 2, "health_every": 1})
    op.wait(lambda d: d.get("config") == 7)
    con.expect(r"remote config 7 applied", timeout=5)  # its status can arrive before the line is written
    op.docs.clear()
    con.mark()
    r = mpremote(vboard.port, "reset")
    assert r.returncode == 0, r.stderr
    con.expect(r"publishing to devices/dev1/telemetry every 2 s", timeout=20)
    doc = op.wait(lambda d: d["state"] == "online" and d["boots"] >= 2)
    assert doc["config"] == 7 and "refused" not in doc, doc
    assert "remote config" not in con.text(), con.evidence()  # nothing applied or refused again at boot
    op.c.disconnect()


@pytest.mark.parametrize("umqtt", umqtt_params()[-1:])
def test_ten_changes_in_a_row_on_a_board_given_py_sources(flashed, fleet, broker, umqtt):
    # each document makes the board compile remote.py and config.py in its heap: without a collect first, the
    # 3rd change in a row ran out of memory and the publisher restarted (5 s without readings)
    con = flashed(interval_s=5, health_every=0)
    con.expect(r"published seq 0 ", timeout=20)
    con.mark()  # the console from here: the firmware's lines, not the flash's
    op = Operator(fleet, broker.port, con)
    for version in range(1, 11):
        op.send(version, {"interval_s": version + 1})
        doc = op.wait(lambda d: d.get("config") == version, timeout=5)
        assert "refused" not in doc, doc
    assert "MemoryError" not in con.text() and "fatal" not in con.text(), con.evidence()
    assert con.text().count("INFO remote config") == 10 and "vboard: boot" not in con.text(), con.evidence()
    op.c.disconnect()
