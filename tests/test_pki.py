import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
import ipaddress

from host_tools import crl, keys, pki
from host_tools.errors import CommandError


def _store(f):
    return Store([x509.load_pem_x509_certificate(f.ca_cert.read_bytes())])


@pytest.mark.parametrize("key_type", ["ec256", "rsa2048"])
def test_chain_verifies_for_server_and_clients(home, key_type):
    pki.init_ca("f1", key_type)
    pki.issue_server("f1", ["broker.local"], ["127.0.0.1"], key_type)
    pki.issue_device("f1", "dev1", key_type)
    pki.issue_verifier("f1", key_type)
    f = pki.Fleet("f1")
    store = _store(f)
    server = pki.load_cert(f.server_dir / "server.pem")
    PolicyBuilder().store(store).build_server_verifier(DNSName("broker.local")).verify(server, [])
    PolicyBuilder().store(store).build_server_verifier(IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(server, [])
    for path in (f.device_dir("dev1") / "client.pem", f.verifier_dir / "verifier.pem"):
        verified = PolicyBuilder().store(store).build_client_verifier().verify(pki.load_cert(path), [])
        assert verified.subjects is not None
    # a device certificate is not a server certificate (EKU clientAuth only)
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(DNSName("dev1")).verify(
            pki.load_cert(f.device_dir("dev1") / "client.pem"), [])
    assert pki.list_identities("f1")[0].key_type == key_type


def test_ca_extensions(fleet):
    ca = pki.load_cert(fleet.ca_cert)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ca.not_valid_before_utc.tzinfo is not None
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3649


def test_device_der_files_load_back_and_match(fleet):
    d = fleet.device_dir("dev1")
    cert = x509.load_der_x509_certificate((d / "client.der").read_bytes())
    key = serialization.load_der_private_key((d / "client.key.der").read_bytes(), None)
    ca = x509.load_der_x509_certificate((d / "ca.der").read_bytes())
    assert cert.public_key() == key.public_key()
    assert ca == pki.load_cert(fleet.ca_cert)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "dev1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.ExtendedKeyUsageOID.CLIENT_AUTH]


def test_private_keys_are_0600_and_ca_key_stays_in_ca_dir(fleet):
    keys = [p for p in fleet.root.rglob("*") if p.is_file() and ".key." in p.name]
    assert len(keys) >= 5
    for p in keys:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    ca_key = fleet.ca_key.read_bytes()
    others = [p for p in fleet.root.rglob("*") if p.is_file() and p != fleet.ca_key]
    assert all(p.read_bytes() != ca_key for p in others)
    assert not any(p.name.startswith("ca.key") for p in others)


def test_nothing_is_overwritten_without_force(fleet):
    before = (fleet.device_dir("dev1") / "client.pem").read_bytes()
    with pytest.raises(CommandError, match="--force"):
        pki.issue_device("demo", "dev1")
    with pytest.raises(CommandError, match="--force"):
        pki.init_ca("demo")
    assert (fleet.device_dir("dev1") / "client.pem").read_bytes() == before
    pki.issue_device("demo", "dev1", force=True)
    assert (fleet.device_dir("dev1") / "client.pem").read_bytes() != before


@pytest.mark.parametrize("bad", ["", "a/b", "dev+1", "dev#", "-x", "a b", "x" * 64, "sensorpub-verifier", "sensorpub-verifier-x", "dev1\n", "é"])
def test_device_names_are_validated(fleet, bad):
    with pytest.raises(CommandError, match="invalid device name"):
        pki.issue_device("demo", bad)


def test_revoke_marks_identity_and_writes_crl(fleet):
    serial = crl.revoke_device("demo", "dev2")
    signed = x509.load_pem_x509_crl(fleet.crl.read_bytes())
    assert signed.get_revoked_certificate_by_serial_number(serial) is not None
    state = {i.name: i.revoked for i in pki.list_identities("demo")}
    assert state["dev2"] is True and state["dev1"] is False


def test_device_without_ca_is_a_clear_error(home):
    with pytest.raises(CommandError, match="pki init"):
        pki.issue_device("nofleet", "dev1")


# --- certificate lifecycle: re-issue, renew, CRL refresh, expiry warnings (issue 10) -------------

def _copy_identity(fleet, name, dst):
    d = fleet.device_dir(name)
    dst.mkdir()
    for f in ("client.pem", "client.key.pem"):
        (dst / f).write_bytes((d / f).read_bytes())
    return dst


def _connects(fleet, port, d):
    import ssl
    import socket
    ctx = ssl.create_default_context(cafile=str(fleet.ca_cert))
    ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key.pem"))
    try:
        with socket.create_connection(("localhost", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04dev1")  # CONNECT
                return s.recv(4)[:1] == b"\x20"  # CONNACK
    except (ssl.SSLError, OSError):
        return False


def test_reissue_revokes_the_old_certificate_and_renew_does_not(broker, fleet, home):
    old = _copy_identity(fleet, "dev1", home / "old")
    assert _connects(fleet, broker.port, old)
    pki.issue_device("demo", "dev1", force=True)  # re-issue: the old key may be compromised
    renewed_from = _copy_identity(fleet, "dev1", home / "second")
    pki.renew_device("demo", "dev1")               # renew: the previous one keeps working until it expires
    broker.reload()
    assert not _connects(fleet, broker.port, old)
    assert _connects(fleet, broker.port, renewed_from)
    assert _connects(fleet, broker.port, fleet.device_dir("dev1"))
    assert len(list((fleet.device_dir("dev1") / "history").glob("*.pem"))) == 2
    crl.revoke_device("demo", "dev1")  # every certificate of the name, current and earlier
    broker.reload()
    assert not _connects(fleet, broker.port, renewed_from)
    assert not _connects(fleet, broker.port, fleet.device_dir("dev1"))
    assert _connects(fleet, broker.port, fleet.device_dir("dev2"))


def test_crl_near_its_end_is_resigned_by_broker_start_and_pki_crl(fleet):
    import datetime as dt
    from conftest import free_port, run_cli
    from host_tools.broker import Broker
    crl.revoke_device("demo", "dev2")
    crl.write_crl("demo", crl.revoked_serials("demo"), days=5)
    b = Broker("demo", port=free_port())
    b.start()
    try:
        signed = x509.load_pem_x509_crl(fleet.crl.read_bytes())
        assert signed.next_update_utc - keys.now() > dt.timedelta(days=300)
        assert any("re-signed" in n for n in b.notes)
        assert {r.serial_number for r in signed} == {pki.load_cert(fleet.device_dir("dev2") / "client.pem").serial_number}
        r = run_cli("pki", "crl", "--fleet", "demo", "--days", "40")
        assert r.returncode == 0 and "next update" in r.stdout and "reloaded" in r.stderr, r.stderr
        signed = x509.load_pem_x509_crl(fleet.crl.read_bytes())
        assert dt.timedelta(days=39) < signed.next_update_utc - keys.now() < dt.timedelta(days=41)
    finally:
        b.stop()


def test_list_warns_of_certificates_expiring_within_30_days(fleet, monkeypatch, capsys):
    import datetime as dt
    from host_tools.cli import main
    real = keys.now
    monkeypatch.setattr(pki, "now", lambda: real() + dt.timedelta(days=350))
    assert main(["pki", "list", "--fleet", "demo"]) == 0
    err = capsys.readouterr().err
    assert "warning: the device certificate of dev1 expires in 14 days: run 'sensorpub pki renew dev1 --push'" in err, err
    assert "of sensorpub demo CA" not in err  # the CA has 10 years


# --- batch provisioning: many identities in one run (issue "Fleet scale and speed", item 1) ------------------

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from host_tools import atomic, batch  # noqa: E402
from host_tools.cli import main  # noqa: E402

DEVICE_FILES = ["ca.der", "ca.pem", "client.der", "client.key.der", "client.key.pem", "client.pem"]


def _complete(f, name) -> int:
    """The identity is whole: all its files, verifies against the CA as a client, keys 0600 and its own.
    Returns its serial."""
    d = f.device_dir(name)
    assert sorted(p.name for p in d.iterdir() if p.is_file()) == DEVICE_FILES, name
    cert = pki.load_cert(d / "client.pem")
    PolicyBuilder().store(_store(f)).build_client_verifier().verify(cert, [])
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == name
    assert x509.load_der_x509_certificate((d / "client.der").read_bytes()) == cert
    for k in ("client.key.pem", "client.key.der"):
        assert stat.S_IMODE((d / k).stat().st_mode) == 0o600, (name, k)
    key = serialization.load_der_private_key((d / "client.key.der").read_bytes(), None)
    assert key.public_key() == cert.public_key()
    assert serialization.load_pem_private_key((d / "client.key.pem").read_bytes(), None).public_key() == key.public_key()
    return cert.serial_number


def _entries(f) -> list:
    """Everything in devices/, hidden leftovers included."""
    return sorted(os.listdir(f.devices_dir)) if f.devices_dir.exists() else []


def _cli_json(capsys, *args):
    assert main(["pki", "device", *args, "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_batch_makes_exactly_the_named_identities(home):
    pki.init_ca("demo")
    out = batch.issue_devices("demo", ["a1", "b-2", "c_3"])
    f = pki.Fleet("demo")
    assert [(o.name, o.status) for o in out] == [("a1", "created"), ("b-2", "created"), ("c_3", "created")]
    assert _entries(f) == ["a1", "b-2", "c_3"]
    serials = [_complete(f, n) for n in ("a1", "b-2", "c_3")]
    assert len(set(serials)) == 3
    # the same certificate profile as one `pki device NAME`: same extensions, in the same order
    pki.issue_device("demo", "single")
    one, many = (pki.load_cert(f.device_dir(n) / "client.pem") for n in ("single", "a1"))
    assert [e.oid for e in one.extensions] == [e.oid for e in many.extensions]
    for shared in (x509.BasicConstraints, x509.KeyUsage, x509.ExtendedKeyUsage, x509.AuthorityKeyIdentifier):
        assert one.extensions.get_extension_for_class(shared) == many.extensions.get_extension_for_class(shared)


def test_count_prefix_and_start_name_the_batch():
    assert batch.batch_names([], 12, "node") == [f"node{i:03d}" for i in range(1, 13)]
    names = batch.batch_names([], 1000)
    assert (names[0], names[-1], len(names)) == ("dev0001", "dev1000", 1000)
    assert batch.batch_names([], 3, None, 998) == ["dev0998", "dev0999", "dev1000"]
    assert batch.batch_names([], 2, "x", 0) == ["x000", "x001"]
    assert batch.batch_names(["b", "a"]) == ["b", "a"]


@pytest.mark.parametrize("names,count,prefix,start,text", [
    ([], 0, None, None, "--count 0: give 1 to 100000"),
    ([], 100_001, None, None, "--count 100001: give 1 to 100000"),
    ([f"d{i}" for i in range(100_001)], None, None, None, "100001 names in one run: at most 100000"),
    (["a"], 3, None, None, "and --count: give one or the other"),
    (["a"], None, "dev", None, "--prefix and --start go with --count"),
    (["a", "b", "a"], None, None, None, "'a' is given twice"),
    ([], 2, "bad/", None, "invalid device name 'bad/001'"),
    ([], 2, None, -1, "--start -1: give 0 or more"),
    ([], None, None, None, "give one or more device names, or --count N"),
])
def test_batch_limits_and_mistakes_are_one_line(names, count, prefix, start, text):
    with pytest.raises(CommandError, match="^[^\n]*$") as e:
        batch.batch_names(names, count, prefix, start)
    assert text in str(e.value)


def test_a_bad_name_in_the_list_writes_nothing(home, capsys):
    pki.init_ca("demo")
    assert main(["pki", "device", "ok1", "bad/x", "ok2"]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "'bad/x'" in err, err
    assert _entries(pki.Fleet("demo")) == []


def test_json_lists_created_then_skipped_and_a_rerun_skips(home, capsys):
    pki.init_ca("demo")
    f = pki.Fleet("demo")
    first, err = _cli_json(capsys, "--count", "5", "--prefix", "n")
    assert [(o["name"], o["status"]) for o in first] == [(f"n{i:03d}", "created") for i in range(1, 6)]
    assert first[0]["path"] == str(f.device_dir("n001"))
    assert "wrote 5 device identities" in err and "100%" in err  # the summary and the bar are on stderr
    serials = {n: _complete(f, n) for n in ("n001", "n005")}
    again, err = _cli_json(capsys, "--count", "7", "--prefix", "n")
    assert [o["status"] for o in again] == ["skipped"] * 5 + ["created"] * 2
    assert "wrote 2 device identities" in err and "skipped 5 that exist" in err, err
    assert {n: _complete(f, n) for n in ("n001", "n005")} == serials
    assert _entries(f) == [f"n{i:03d}" for i in range(1, 8)]
    assert main(["pki", "device", "n001", "n002"]) == 0  # names, not --count: the same rule
    assert "wrote 0 device identities" in capsys.readouterr().out


def test_one_name_is_as_before_quiet_and_refusing_to_overwrite(home, capsys):
    pki.init_ca("demo")
    assert main(["pki", "device", "dev9"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"wrote {pki.Fleet('demo').device_dir('dev9') / 'client.pem'}"
    assert out.err.strip() == "generating ec256 key for 'dev9'"  # no progress bar for one name
    assert main(["pki", "device", "dev9"]) == 1
    assert "already exists: pass --force" in capsys.readouterr().err
    old = pki.load_cert(pki.Fleet("demo").device_dir("dev9") / "client.pem").serial_number
    assert main(["pki", "device", "dev9", "--force", "--key-type", "rsa2048"]) == 0
    assert f"revoked the replaced certificate of 'dev9' (serial {old:x})" in capsys.readouterr().err
    assert old in crl.revoked_serials("demo")
    assert pki.list_identities("demo")[-1].key_type == "rsa2048"


def test_batch_force_reissues_revokes_and_keeps_history(fleet):
    old = {n: _complete(fleet, n) for n in ("dev1", "dev2")}
    out = batch.issue_devices("demo", ["dev1", "dev2", "dev3"], force=True)
    assert [o.status for o in out] == ["replaced", "replaced", "created"]
    new = {n: _complete(fleet, n) for n in ("dev1", "dev2", "dev3")}
    assert not set(new.values()) & set(old.values())
    assert set(old.values()) <= crl.revoked_serials("demo") and not set(new.values()) & crl.revoked_serials("demo")
    for n, serial in old.items():
        assert [p.name for p in (fleet.device_dir(n) / "history").iterdir()] == [f"{serial:x}.pem"]


def test_a_batch_stopped_by_an_error_leaves_whole_identities_and_resumes(home, monkeypatch):
    pki.init_ca("demo")
    f, names = pki.Fleet("demo"), batch.numbered(10)
    calls, real = [], atomic.create_file

    def failing(*a, **k):  # the 4th identity fails half-way through writing its files
        calls.append(1)
        if len(calls) == 3 * len(DEVICE_FILES) + 3:
            raise OSError(28, "No space left on device")
        real(*a, **k)
    monkeypatch.setattr(atomic, "create_file", failing)
    with pytest.raises(OSError, match="No space"):
        batch.issue_devices("demo", names)
    assert _entries(f) == names[:3]  # three whole identities, nothing of the fourth
    before = {n: _complete(f, n) for n in names[:3]}
    monkeypatch.setattr(atomic, "create_file", real)
    out = batch.issue_devices("demo", names)
    assert [o.status for o in out] == ["skipped"] * 3 + ["created"] * 7
    after = {n: _complete(f, n) for n in names}
    assert {n: after[n] for n in names[:3]} == before and len(set(after.values())) == 10
    assert _entries(f) == names


KILL_AT_FILE = """
import os, signal, sys
from host_tools import atomic, batch
calls, real = [0], atomic.create_file
def create_file(*a, **k):
    calls[0] += 1
    if calls[0] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(*a, **k)
atomic.create_file = create_file
batch.issue_devices("demo", sys.argv[2:])
"""

KILL_MID_SWAP = """
import os, signal, sys
from host_tools import batch
real = os.rename
def rename(src, dst):
    real(src, dst)
    if ".old-" in str(dst):  # the identity is moved aside, the new one not yet in its place
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
batch.issue_devices("demo", sys.argv[1:], force=True)
"""


def _killed(script, *args):
    r = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr


def test_a_run_killed_mid_identity_leaves_a_hidden_leftover_the_next_run_removes(home):
    pki.init_ca("demo")
    f, names = pki.Fleet("demo"), batch.numbered(6)
    _killed(KILL_AT_FILE, 2 * len(DEVICE_FILES) + 4, *names)  # the 3rd identity has 3 of its files
    left = _entries(f)
    assert left[1:] == names[:2] and left[0].startswith(".dev003.tmp-"), left
    assert len(os.listdir(f.devices_dir / left[0])) == 3  # half-made
    assert [i.name for i in pki.list_identities("demo") if i.role == "device"] == names[:2]
    notes = []
    out = batch.issue_devices("demo", names, progress=notes.append)
    assert [o.status for o in out] == ["skipped"] * 2 + ["created"] * 4
    assert any("tidied 1 identity" in n for n in notes), notes
    assert _entries(f) == names and len({_complete(f, n) for n in names}) == 6


def test_a_reissue_killed_between_its_renames_is_finished_by_the_next_run(fleet):
    old = _complete(fleet, "dev1")
    _killed(KILL_MID_SWAP, "dev1")
    left = _entries(fleet)
    assert "dev1" not in left and any(e.startswith(".dev1.old-") for e in left), left
    out = batch.issue_devices("demo", ["dev1"])  # not --force: it only tidies, and then dev1 exists
    assert [o.status for o in out] == ["skipped"]
    assert _entries(fleet) == ["dev1", "dev2"]
    new = _complete(fleet, "dev1")
    assert new != old and old in crl.revoked_serials("demo")
    assert [p.name for p in (fleet.device_dir("dev1") / "history").iterdir()] == [f"{old:x}.pem"]


def test_cli_batch_killed_with_sigkill_resumes_without_duplicates(home, capsys):
    pki.init_ca("demo")
    f, total = pki.Fleet("demo"), 1000
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "pki", "device", "--count", str(total)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while sum(not e.startswith(".") for e in _entries(f)) < 20 and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the batch ended before it could be killed"
    made = [e for e in _entries(f) if not e.startswith(".")]
    assert 20 <= len(made) < total
    for n in made:
        _complete(f, n)
    out, err = _cli_json(capsys, "--count", str(total))
    assert sum(o["status"] == "skipped" for o in out) == len(made)
    assert sum(o["status"] == "created" for o in out) == total - len(made)
    names = batch.numbered(total)
    assert _entries(f) == names  # every name once, no leftovers
    serials = {pki.load_cert(f.device_dir(n) / "client.pem").serial_number for n in names}
    assert len(serials) == total
    for n in names[:: total // 30]:
        _complete(f, n)
