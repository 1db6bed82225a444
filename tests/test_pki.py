import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
import ipaddress

from host_tools import pki
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
    serial = pki.revoke_device("demo", "dev2")
    crl = x509.load_pem_x509_crl(fleet.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    state = {i.name: i.revoked for i in pki.list_identities("demo")}
    assert state["dev2"] is True and state["dev1"] is False


def test_device_without_ca_is_a_clear_error(home):
    with pytest.raises(CommandError, match="pki init"):
        pki.issue_device("nofleet", "dev1")
