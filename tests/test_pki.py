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
    assert "warning: the device certificate of dev1 expires in 14 days: run 'sensorpub pki renew dev1'" in err, err
    assert "of sensorpub demo CA" not in err  # the CA has 10 years
