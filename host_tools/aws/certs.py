"""Certificates as AWS IoT sees them: ids, PEM text, the CA's proof of possession, Amazon Root CA 1,
and the fleet's own identities checked against its CA before anything is uploaded.

AWS identifies a certificate by the SHA-256 of its DER bytes, so the fleet's files alone tell which
certificate ids are ours.
"""
import hashlib
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import CommandError
from ..paths import VERIFIER_CN
from ..pki import Fleet, build_leaf, load_cert, new_key

ROOT_CA_FILE = Path(__file__).resolve().parent.parent / "data" / "AmazonRootCA1.pem"
# SHA-256 of Amazon Root CA 1 (DER): the shipped file is checked against it before use
ROOT_CA_SHA256 = "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"


def cert_id(cert: x509.Certificate) -> str:
    """AWS IoT's certificate id: the SHA-256 of the DER encoding, in hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def verification_certificate(ca_cert: x509.Certificate, ca_key, code: str) -> x509.Certificate:
    """Proof of possession of the CA key: CN = the account's registration code, signed by the CA.

    Its key pair lives only in memory and is dropped on return."""
    key = new_key("ec256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)])
    return build_leaf(ca_cert, ca_key, subject, key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH, days=1)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)  # issuer name and signature
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def amazon_root_ca(path: Optional[str] = None) -> x509.Certificate:
    """Amazon Root CA 1 as shipped in host_tools/data (checked by fingerprint), or a CA file the user gives."""
    if path:
        p = Path(path)
        if not p.exists():
            raise CommandError(f"--aws-root-ca {p}: no such file; give a PEM or DER CA certificate")
        return load_cert(p)
    cert = load_cert(ROOT_CA_FILE)
    if cert_id(cert) != ROOT_CA_SHA256:
        raise CommandError(f"{ROOT_CA_FILE} is not Amazon Root CA 1 (fingerprint mismatch): restore it from git")
    return cert


def fleet_ca(fleet: str) -> x509.Certificate:
    """The fleet CA's certificate (a clear line when the fleet has none)."""
    return Fleet(fleet).require_ca()[0]


def identity(fleet: str, name: str) -> x509.Certificate:
    """The device's (or, for VERIFIER_CN, the verifier's) certificate, checked against the fleet CA."""
    f = Fleet(fleet)
    path = f.verifier_dir / "verifier.pem" if name == VERIFIER_CN else f.device_dir(name) / "client.pem"
    fix = f"sensorpub {'pki verifier' if name == VERIFIER_CN else 'pki device ' + name} --fleet {fleet}"
    if not path.exists():
        raise CommandError(f"{path} is missing: run '{fix}' first")
    cert = load_cert(path)
    if not issued_by(cert, fleet_ca(fleet)):
        raise CommandError(f"{path} was not issued by the fleet CA {f.ca_cert} (was the CA re-created?): "
                           f"re-issue it with '{fix} --force'")
    return cert
