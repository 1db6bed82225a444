"""Certificate renewal over MQTT on the real firmware (virtual board, real mpremote, Mosquitto with its ACL and
CRL, real paho): `sensorpub pki renew dev1 --push` is in use after the device's next connection and survives a
reset, once per umqtt.simple the board can have frozen; a bad certificate (another key, another CA, expired,
not DER, or one only the broker can tell is bad) is refused with the reason while the old one keeps working."""
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from board_helpers import Console, Operator, mpremote
from conftest import run_cli, umqtt_params
from host_tools import pki
from host_tools.flash import build_config, flash
from host_tools.keys import load_cert, load_key, new_key, now
from host_tools.vboard import VBoard

ALL = umqtt_params()


@pytest.fixture(params=ALL)
def umqtt(request):
    return request.param


def _serial(cert) -> str:
    return f"{cert.serial_number:x}"


def _der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _leaf(ca_cert, ca_key, public_key, **kw):
    return pki.build_leaf(ca_cert, ca_key, pki._name("dev1", "demo"), public_key, ExtendedKeyUsageOID.CLIENT_AUTH,
                          sans=pki._client_san("demo", "dev1"), **kw)


def test_pushed_renewal_is_in_use_after_the_next_connection_and_after_a_reset(flashed, fleet, broker, vboard):
    con = flashed(health_every=0)
    con.expect(r"published seq 1 ", timeout=20)
    op = Operator(fleet, broker.port, con)
    old = _serial(load_cert(fleet.device_dir("dev1") / "client.pem"))
    assert op.wait(lambda d: d["state"] == "online")["cert"] == old
    key_before = (fleet.device_dir("dev1") / "client.key.der").read_bytes()
    pki.issue_verifier("demo", name="ops")  # the operator's own identity: the test's verifier stays connected
    assert broker.reload()

    r = run_cli("pki", "renew", "dev1", "--push", "--port", str(broker.port), "--as", "ops", "--timeout", "30",
                "--json")
    assert r.returncode == 0, r.stderr + con.evidence()
    out = json.loads(r.stdout)
    new = _serial(load_cert(fleet.device_dir("dev1") / "client.pem"))
    assert (out["result"], out["serial"], out["previous"], out["running"]) == ("in use", new, old, new), out
    assert new != old and (fleet.device_dir("dev1") / "client.key.der").read_bytes() == key_before  # key kept
    assert (fleet.device_dir("dev1") / "history" / f"{old}.pem").exists()
    con.expect(rf"certificate {new} in use \(was {old}\)", timeout=5)
    seq = op.next_seq(timeout=3)  # readings go on over the new connection, on time (1 s)
    assert op.next_seq(timeout=3) == seq + 1
    # the host clears the cert topic once the device runs it: an empty retained message, which umqtt reads as
    # read(0) (that once waited out the 10 s read timeout and dropped the link)
    assert "link lost" not in con.text() and "queued 0" in con.text(), con.evidence()

    # a reset: the board boots with the new certificate (renamed into place), and nothing is retained to redo
    op.docs.clear()
    con.mark()
    assert mpremote(vboard.port, "reset").returncode == 0
    doc = op.wait(lambda d: d["state"] == "online" and d["boots"] >= 2)
    assert doc["cert"] == new and "cert_refused" not in doc, doc
    con.expect(r"published seq", timeout=20)
    assert "certificate" not in con.text(), con.evidence()

    # which certificate each device runs: pki list --live
    r = run_cli("pki", "list", "--live", "--port", str(broker.port), "--as", "ops", "--wait", "1", "--json")
    assert r.returncode == 0, r.stderr
    rows = {(x["role"], x["name"]): x for x in json.loads(r.stdout)}
    assert rows[("device", "dev1")]["running"] == new and rows[("device", "dev2")]["running"] is None
    op.c.disconnect()


@pytest.mark.parametrize("umqtt", [ALL[-1]])
def test_bad_certificates_are_refused_and_the_old_one_keeps_working(flashed, fleet, broker, vboard, umqtt):
    con = flashed(health_every=0)
    con.expect(r"published seq 1 ", timeout=20)
    op = Operator(fleet, broker.port, con)
    old = _serial(load_cert(fleet.device_dir("dev1") / "client.pem"))
    op.wait(lambda d: d.get("cert") == old)
    ca_cert, ca_key = fleet.require_ca()
    mine = load_key(fleet.device_dir("dev1") / "client.key.pem").public_key()
    other_key = new_key("ec256")
    other_ca = pki.build_ca("elsewhere", other_key)            # another CA: another name
    twin_key = new_key("ec256")
    twin_ca = pki.build_ca("demo", twin_key)                   # a CA with the fleet CA's very name, not trusted
    expired = _leaf(ca_cert, ca_key, mine, not_before=now() - dt.timedelta(days=400), days=365)
    cases = [
        (_der(_leaf(ca_cert, ca_key, new_key("ec256").public_key())), "for another key than this device's"),
        (_der(_leaf(other_ca, other_key, mine)), "issued by another CA than certificate"),
        (_der(expired), "expired on"),
        (_leaf(ca_cert, ca_key, mine).public_bytes(serialization.Encoding.PEM), "not one DER certificate"),
        (_der(_leaf(twin_ca, twin_key, mine)), "the broker refused the connection made with it"),
    ]
    for payload, reason in cases:
        op.put_cert(payload)
        doc = op.wait(lambda d: "cert_refused" in d and reason in d["cert_refused"]["reason"], timeout=30)
        assert doc["cert"] == old and doc["state"] == "online", doc
        con.expect(rf"ERROR certificate \S+ refused: [^\n]*{reason}[^\n]*; certificate {old} stays in use", timeout=5)
        seq = op.next_seq()  # the old certificate keeps working: readings go on
        assert op.next_seq() == seq + 1
    assert "rolled back" in con.text()
    # what the board's flash holds: the old certificate, and no trial file left behind
    r = mpremote(vboard.port, "exec", "import os; print(sorted(os.listdir('/certs')))")
    assert r.returncode == 0 and r.stdout.strip().endswith("['ca.der', 'client.der', 'client.key.der']"), r
    op.c.disconnect()



def _small_board(fleet, broker, heap):
    vb = VBoard("ren")
    vb.start(heapsize=heap, erase=True)
    con = Console(vb, broker)
    flash("vboard:ren", "demo", "dev1", "unix",
          build_config("dev1", "localhost", broker.port, 1, {"health_every": 0}), mpy=True)
    con.expect(r"published seq 1 ", timeout=20)
    return vb, con


def _renew(fleet, op, outcome):
    ca_cert, ca_key = fleet.require_ca()
    cert = _leaf(ca_cert, ca_key, load_key(fleet.device_dir("dev1") / "client.key.pem").public_key())
    op.put_cert(_der(cert))
    return op.wait(lambda d: outcome(d, _serial(cert)), timeout=30), _serial(cert)


def test_renewals_in_a_row_in_a_90k_heap(fleet, broker):
    # a renewal collects the garbage before it loads renew.py and drops the old TLS context before it builds
    # the next: without the collect, the second push in a row ran out of memory in creds.context()
    vb, con = _small_board(fleet, broker, "90k")  # renewal's .mpy heap floor, 2 KB steps (readings alone: 70)
    try:
        op = Operator(fleet, broker.port, con)
        for _ in range(4):
            doc, serial = _renew(fleet, op, lambda d, s: d.get("cert") == s or "cert_refused" in d)
            assert doc.get("cert") == serial and "cert_refused" not in doc, doc
        seq = op.next_seq()
        assert op.next_seq() == seq + 1
        text = con.since_boot()
        assert text.count("the broker accepted it") == 4 and "Traceback" not in text, con.evidence()
        op.c.disconnect()
    finally:
        vb.stop()


def test_a_renewal_out_of_heap_is_loud_once_and_the_board_keeps_publishing(fleet, broker):
    # at 84 KB the first renewal fits and the second does not: one traceback, the publisher restarts with the
    # certificate in use, and the retained push (sent again at every CONNECT) is skipped until a reset
    vb, con = _small_board(fleet, broker, "84k")
    try:
        op = Operator(fleet, broker.port, con)
        first = _renew(fleet, op, lambda d, s: d.get("cert") == s)[1]
        con.mark()
        ca_cert, ca_key = fleet.require_ca()
        op.put_cert(_der(_leaf(ca_cert, ca_key, load_key(fleet.device_dir("dev1") / "client.key.pem").public_key())))
        con.expect(r"ERROR certificate renewal ran out of heap \(\d+ bytes free\): pushed certificates are skipped "
                   r"until a reset", timeout=20)
        seqs_before = len(op.seqs)
        doc = op.wait(lambda d: d["state"] == "online" and d.get("cert") == first and len(op.seqs) > seqs_before + 2,
                      timeout=40)
        assert "cert_refused" not in doc, doc
        seen = sorted(set(op.seqs))
        assert seen == list(range(seen[0], seen[-1] + 1)), seen  # no reading lost
        text = con.text()
        assert text.count("Traceback") <= 1 and text.count("ran out of heap") == 1, con.evidence()
        op.c.disconnect()
    finally:
        vb.stop()
