"""Fleet PKI: a CA, the broker's server certificate, device and verifier identities, a CRL.

Layout under certs/<fleet>/ is described in certs/README.md. All X.509 work is done with
`cryptography`; private keys are written 0600 and never printed.
"""
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .atomic import Files, clean_leftovers, write_dir
from .contract import CA_FILE, CERT_FILE, KEY_FILE
from .crl import revoke_serials, write_crl
from .errors import CommandError
from .fleet import Fleet
from .keys import key_der, key_pem, key_type_of, load_cert, load_key, new_key, now, write_file
from .paths import check_name, verifier_cn

CA_DAYS = 3650
LEAF_DAYS = 365
EXPIRY_WARN_DAYS = 30  # `pki list` warns about certificates expiring sooner

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def _name(cn: str, fleet: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sensorpub"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, fleet),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _guard(paths: List[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise CommandError(f"{existing[0]} already exists: pass --force to replace it")


def build_ca(fleet: str, key, days: int = CA_DAYS, not_before: Optional[dt.datetime] = None) -> x509.Certificate:
    start = not_before or now() - dt.timedelta(minutes=5)
    name = _name(f"sensorpub {fleet} CA", fleet)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass
class LeafTemplate:
    """What every leaf certificate a CA signs with one EKU shares (issuer, validity, constraints, key usage):
    made once, then sign() per identity, so a batch does not rebuild it a thousand times."""
    base: x509.CertificateBuilder
    aki: x509.AuthorityKeyIdentifier
    ca_key: object

    @classmethod
    def of(cls, ca_cert: x509.Certificate, ca_key, eku, is_ec: bool, days: int = LEAF_DAYS,
           not_before: Optional[dt.datetime] = None) -> "LeafTemplate":
        start = not_before or now() - dt.timedelta(minutes=5)
        base = (
            x509.CertificateBuilder()
            .issuer_name(ca_cert.subject)
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=not is_ec,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        )
        return cls(base, x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), ca_key)

    def sign(self, subject: x509.Name, public_key, sans: Optional[list] = None) -> x509.Certificate:
        b = (self.base.subject_name(subject).public_key(public_key).serial_number(x509.random_serial_number())
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
             .add_extension(self.aki, critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(self.ca_key, hashes.SHA256())


def build_leaf(ca_cert: x509.Certificate, ca_key, subject: x509.Name, public_key, eku, *,
               sans: Optional[list] = None, days: int = LEAF_DAYS,
               not_before: Optional[dt.datetime] = None) -> x509.Certificate:
    is_ec = isinstance(public_key, ec.EllipticCurvePublicKey)
    return LeafTemplate.of(ca_cert, ca_key, eku, is_ec, days, not_before).sign(subject, public_key, sans)


def ca_files(ca_cert: x509.Certificate, der: bool) -> Files:
    """The CA certificate an identity directory carries: PEM for the host and, with `der`, DER for the board."""
    files = {"ca.pem": (ca_cert.public_bytes(serialization.Encoding.PEM), False)}
    if der:
        files[CA_FILE] = (ca_cert.public_bytes(serialization.Encoding.DER), False)
    return files


def identity_files(stem: str, key, cert: x509.Certificate, ca: Files, der: bool) -> Files:
    """An identity directory's files (`ca` from ca_files): PEM for the host and, with `der`, DER for the board.
    Keys are private."""
    files = {f"{stem}.key.pem": (key_pem(key), True),
             f"{stem}.pem": (cert.public_bytes(serialization.Encoding.PEM), False), **ca}
    if der:  # what goes to the board
        files[CERT_FILE] = (cert.public_bytes(serialization.Encoding.DER), False)
        files[KEY_FILE] = (key_der(key), True)
    return files


def init_ca(fleet: str, key_type: str = "ec256", force: bool = False, progress: Progress = _quiet) -> Path:
    f = Fleet(fleet)
    _guard([f.ca_cert, f.ca_key], force)
    progress(f"generating {key_type} CA key for fleet {fleet!r}")
    key = new_key(key_type)
    cert = build_ca(fleet, key)
    write_file(f.ca_key, key_pem(key), private=True)
    write_file(f.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    write_file(f.ca_dir / CA_FILE, cert.public_bytes(serialization.Encoding.DER))
    if f.crl.exists():
        f.crl.unlink()
    write_crl(fleet, [])
    return f.ca_cert


def _issue(fleet: str, cn: str, out_dir: Path, stem: str, eku, key_type: str, force: bool,
           progress: Progress, sans=None, der: bool = False, renew: bool = False, keep_key: bool = False) -> Path:
    """Write a new key and certificate, all files at once (atomic.write_dir). The one replaced goes to history/;
    with `force` (a re-issue, the old key may be compromised) it is also revoked at once; with `renew` it
    stays valid until it expires. `keep_key` (a renewal): the certificate is for the key the identity has."""
    f = Fleet(fleet)
    ca_cert, ca_key = f.require_ca()
    cert_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key.pem"
    if not renew:
        _guard([cert_path, key_path], force)
    elif not cert_path.exists():
        raise CommandError(f"{cert_path} does not exist: issue it first ('sensorpub pki device NAME')")
    if clean_leftovers(out_dir.parent):
        progress("tidied identity directories an interrupted run left behind")
    files: Files = {}
    if cert_path.exists():
        old = load_cert(cert_path)
        files[f"history/{old.serial_number:x}.pem"] = (cert_path.read_bytes(), False)
        if not renew:
            revoke_serials(fleet, [old.serial_number])
            progress(f"revoked the replaced certificate of {cn!r} (serial {old.serial_number:x})")
    if keep_key:
        key_path = out_dir / f"{stem}.key.pem"
        if not key_path.exists():
            raise CommandError(f"{key_path} does not exist: a certificate for the device's key needs it "
                               "(without --push, 'pki renew' makes a new key)")
        key = load_key(key_path)
        progress(f"issuing a certificate for the existing key of {cn!r}")
    else:
        progress(f"generating {key_type} key for {cn!r}")
        key = new_key(key_type)
    cert = build_leaf(ca_cert, ca_key, _name(cn, fleet), key.public_key(), eku, sans=sans)
    write_dir(out_dir, {**identity_files(stem, key, cert, ca_files(ca_cert, der), der), **files}, replace=True)
    return cert_path


def issue_server(fleet: str, hosts: List[str], ips: List[str], key_type: str = "ec256", force: bool = False,
                 progress: Progress = _quiet) -> Path:
    if not hosts and not ips:
        hosts, ips = ["localhost"], ["127.0.0.1"]
    sans: list = [x509.DNSName(h) for h in hosts]
    for ip in ips:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise CommandError(f"--ip {ip!r} is not an IP address: give e.g. --ip 192.168.1.10") from None
    cn = hosts[0] if hosts else ips[0]
    return _issue(fleet, cn, Fleet(fleet).server_dir, "server", ExtendedKeyUsageOID.SERVER_AUTH, key_type, force,
                  progress, sans=sans)


def issue_device(fleet: str, name: str, key_type: str = "ec256", force: bool = False,
                 progress: Progress = _quiet) -> Path:
    check_name("device", name)
    return _issue(fleet, name, Fleet(fleet).device_dir(name), "client", ExtendedKeyUsageOID.CLIENT_AUTH, key_type,
                  force, progress, sans=_client_san(fleet, name), der=True)


def _client_san(fleet: str, cn: str) -> list:
    """RFC 5280 profiles (and cryptography's client verifier) want a SAN on client certificates too."""
    return [x509.UniformResourceIdentifier(f"urn:sensorpub:{fleet}:{cn}")]


def issue_verifier(fleet: str, key_type: str = "ec256", force: bool = False, progress: Progress = _quiet,
                   name: str = "") -> Path:
    """The host-side reader's identity; `name` gives a consumer (a bridge, a second verify) its own client id."""
    cn = verifier_cn(name)
    return _issue(fleet, cn, Fleet(fleet).verifier_identity_dir(name), "verifier", ExtendedKeyUsageOID.CLIENT_AUTH,
                  key_type, force, progress, sans=_client_san(fleet, cn))


def renew_device(fleet: str, name: str, key_type: str = "ec256", progress: Progress = _quiet,
                 keep_key: bool = False) -> Path:
    """A new certificate for a device whose certificate nears its end; the old one keeps working until it
    expires, so the board has time to get it. Without `keep_key`, with a new key too (the board needs both:
    'sensorpub flash --certs-only'); with it, for the key the board has, so the certificate alone can travel
    over MQTT ('pki renew NAME --push': the private key never does)."""
    check_name("device", name)
    return _issue(fleet, name, Fleet(fleet).device_dir(name), "client", ExtendedKeyUsageOID.CLIENT_AUTH, key_type,
                  False, progress, sans=_client_san(fleet, name), der=True, renew=True, keep_key=keep_key)


@dataclass
class Identity:
    role: str
    name: str
    serial: int
    key_type: str
    not_after: dt.datetime
    revoked: bool

    @property
    def expires_in_days(self) -> int:
        return (self.not_after - now()).days


def list_identities(fleet: str) -> List[Identity]:
    f = Fleet(fleet)
    if not f.ca_cert.exists():
        raise CommandError(f"fleet {fleet!r} has no CA: run 'sensorpub pki init --fleet {fleet}'")
    from .crl import revoked_serials
    revoked = revoked_serials(fleet)
    found = [("ca", f.ca_cert), ("server", f.server_dir / "server.pem")]
    found += [("verifier", d / "verifier.pem") for d in sorted(f.root.glob("verifier*"))]
    devs = f.root / "devices"
    if devs.is_dir():
        found += [("device", d / "client.pem") for d in sorted(devs.iterdir()) if not d.name.startswith(".")]
    out = []
    for role, path in found:
        if not path.exists():
            continue
        c = load_cert(path)
        cn = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        out.append(Identity(role, str(cn), c.serial_number, key_type_of(c.public_key()),
                            c.not_valid_after_utc, c.serial_number in revoked))
    return out
