"""Fleet PKI: a CA, the broker's server certificate, device and verifier identities, a CRL.

Layout under certs/<fleet>/ is described in certs/README.md. All X.509 work is done with
`cryptography`; private keys are written 0600 and never printed.
"""
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CommandError
from .paths import VERIFIER_CN, check_name, fleet_dir, verifier_cn

KEY_TYPES = ("ec256", "rsa2048")
CA_DAYS = 3650
LEAF_DAYS = 365
CRL_DAYS = 365      # next_update of a CRL we write
CRL_REFRESH_DAYS = 30  # `broker start` rewrites a CRL closer than this to its next_update
EXPIRY_WARN_DAYS = 30  # `pki list` warns about certificates expiring sooner

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def new_key(key_type: str = "ec256"):
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise CommandError(f"unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")


def key_type_of(key) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec256" if key.curve.name == "secp256r1" else "ec-" + key.curve.name
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    return type(key).__name__


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600 if private else 0o644)  # umask-proof
    os.replace(tmp, path)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_der(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_cert(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{path} is missing: run 'sensorpub pki' to create it") from None
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError:
        raise CommandError(f"{path} is not a valid certificate: recreate it with 'sensorpub pki ... --force'") from None


def load_key(path: Path):
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise CommandError(f"{path} is missing: run 'sensorpub pki init' to create the CA") from None
    except (ValueError, TypeError):
        raise CommandError(f"{path} is not a valid unencrypted private key") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _name(cn: str, fleet: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sensorpub"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, fleet),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


@dataclass
class Fleet:
    """Paths of one fleet's PKI."""
    name: str

    @property
    def root(self) -> Path:
        return fleet_dir(self.name)

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.ca_dir / "ca.key.pem"

    @property
    def crl(self) -> Path:
        return self.ca_dir / "crl.pem"

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def verifier_dir(self) -> Path:
        return self.root / "verifier"

    def verifier_identity_dir(self, name: str = "") -> Path:
        """certs/<fleet>/verifier (the default) or verifier-<name>: a named identity per consumer."""
        return self.root / ("verifier-" + check_name("verifier", name) if name else "verifier")

    def verifier_cns(self) -> List[str]:
        """CNs of every verifier identity issued in this fleet (for the broker's ACL)."""
        dirs = sorted(d for d in self.root.glob("verifier*") if (d / "verifier.pem").exists())
        return [VERIFIER_CN + d.name[len("verifier"):] for d in dirs]

    def device_dir(self, name: str) -> Path:
        return self.root / "devices" / check_name("device", name)

    def require_ca(self):
        if not self.ca_cert.exists():
            raise CommandError(f"fleet {self.name!r} has no CA ({self.ca_cert} missing): run 'sensorpub pki init --fleet {self.name}'")
        return load_cert(self.ca_cert), load_key(self.ca_key)


def _guard(paths: List[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise CommandError(f"{existing[0]} already exists: pass --force to replace it")


def build_ca(fleet: str, key, days: int = CA_DAYS, not_before: Optional[dt.datetime] = None) -> x509.Certificate:
    start = not_before or _now() - dt.timedelta(minutes=5)
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


def build_leaf(ca_cert: x509.Certificate, ca_key, subject: x509.Name, public_key, eku, *,
               sans: Optional[list] = None, days: int = LEAF_DAYS,
               not_before: Optional[dt.datetime] = None) -> x509.Certificate:
    start = not_before or _now() - dt.timedelta(minutes=5)
    is_ec = isinstance(public_key, ec.EllipticCurvePublicKey)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=not is_ec,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def init_ca(fleet: str, key_type: str = "ec256", force: bool = False, progress: Progress = _quiet) -> Path:
    f = Fleet(fleet)
    _guard([f.ca_cert, f.ca_key], force)
    progress(f"generating {key_type} CA key for fleet {fleet!r}")
    key = new_key(key_type)
    cert = build_ca(fleet, key)
    _write(f.ca_key, key_pem(key), private=True)
    _write(f.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(f.ca_dir / "ca.der", cert.public_bytes(serialization.Encoding.DER))
    if f.crl.exists():
        f.crl.unlink()
    write_crl(fleet, [])
    return f.ca_cert


def _issue(fleet: str, cn: str, out_dir: Path, stem: str, eku, key_type: str, force: bool,
           progress: Progress, sans=None, der: bool = False, renew: bool = False) -> Path:
    """Write a new key and certificate. The one replaced goes to history/; with `force` (a re-issue, the old
    key may be compromised) it is also revoked at once; with `renew` it stays valid until it expires."""
    f = Fleet(fleet)
    ca_cert, ca_key = f.require_ca()
    cert_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key.pem"
    if not renew:
        _guard([cert_path, key_path], force)
    elif not cert_path.exists():
        raise CommandError(f"{cert_path} does not exist: issue it first ('sensorpub pki device NAME')")
    if cert_path.exists():
        old = load_cert(cert_path)
        _write(out_dir / "history" / f"{old.serial_number:x}.pem", cert_path.read_bytes())
        if not renew:
            revoke_serials(fleet, [old.serial_number])
            progress(f"revoked the replaced certificate of {cn!r} (serial {old.serial_number:x})")
    progress(f"generating {key_type} key for {cn!r}")
    key = new_key(key_type)
    cert = build_leaf(ca_cert, ca_key, _name(cn, fleet), key.public_key(), eku, sans=sans)
    _write(key_path, key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write(out_dir / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    if der:  # what goes to the board
        _write(out_dir / "client.der", cert.public_bytes(serialization.Encoding.DER))
        _write(out_dir / "client.key.der", key_der(key), private=True)
        _write(out_dir / "ca.der", ca_cert.public_bytes(serialization.Encoding.DER))
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


def _revoked(fleet: str) -> Dict[int, dt.datetime]:
    """serial -> revocation date, from the fleet CRL."""
    f = Fleet(fleet)
    if not f.crl.exists():
        return {}
    crl = x509.load_pem_x509_crl(f.crl.read_bytes())
    return {r.serial_number: r.revocation_date_utc for r in crl}


def _revoked_serials(fleet: str) -> set:
    return set(_revoked(fleet))


def write_crl(fleet: str, serials, days: int = CRL_DAYS) -> Path:
    """Sign the CRL anew (next_update `days` ahead); serials already listed keep their revocation date."""
    f = Fleet(fleet)
    ca_cert, ca_key = f.require_ca()
    now = _now()
    dates = _revoked(fleet) if f.crl.exists() else {}
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
    for s in sorted(serials):
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(dates.get(s, now)).build())
    _write(f.crl, b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return f.crl


def revoke_serials(fleet: str, serials) -> None:
    write_crl(fleet, _revoked_serials(fleet) | set(serials))


def refresh_crl(fleet: str, days: int = CRL_DAYS, if_within: Optional[int] = None) -> Optional[dt.datetime]:
    """Re-sign the CRL with a new next_update; with `if_within`, only when the current one ends sooner than
    that many days. Returns the new next_update, or None when nothing was done."""
    f = Fleet(fleet)
    if if_within is not None and f.crl.exists():
        crl = x509.load_pem_x509_crl(f.crl.read_bytes())
        if crl.next_update_utc and crl.next_update_utc - _now() > dt.timedelta(days=if_within):
            return None
    write_crl(fleet, _revoked_serials(fleet), days)
    return x509.load_pem_x509_crl(f.crl.read_bytes()).next_update_utc


def revoke_device(fleet: str, name: str) -> int:
    """Revoke the device's certificate and every earlier one of that name (history/): none may connect."""
    d = Fleet(fleet).device_dir(name)
    if not (d / "client.pem").exists():
        raise CommandError(f"no device {name!r} in fleet {fleet!r}: nothing to revoke")
    cert = load_cert(d / "client.pem")
    older = [load_cert(p).serial_number for p in sorted((d / "history").glob("*.pem"))]
    revoke_serials(fleet, [cert.serial_number, *older])
    return cert.serial_number


def renew_device(fleet: str, name: str, key_type: str = "ec256", progress: Progress = _quiet) -> Path:
    """A new key and certificate for a device whose certificate nears its end; the old one keeps working
    until it expires, so the board has time to get the new files ('sensorpub flash --certs-only')."""
    check_name("device", name)
    return _issue(fleet, name, Fleet(fleet).device_dir(name), "client", ExtendedKeyUsageOID.CLIENT_AUTH, key_type,
                  False, progress, sans=_client_san(fleet, name), der=True, renew=True)


@dataclass
class Identity:
    role: str
    name: str
    serial: int
    key_type: str
    not_after: dt.datetime
    revoked: bool
    path: Path


def list_identities(fleet: str) -> List[Identity]:
    f = Fleet(fleet)
    if not f.ca_cert.exists():
        raise CommandError(f"fleet {fleet!r} has no CA: run 'sensorpub pki init --fleet {fleet}'")
    revoked = _revoked_serials(fleet)
    found = [("ca", f.ca_cert), ("server", f.server_dir / "server.pem")]
    found += [("verifier", d / "verifier.pem") for d in sorted(f.root.glob("verifier*"))]
    devs = f.root / "devices"
    if devs.is_dir():
        found += [("device", d / "client.pem") for d in sorted(devs.iterdir())]
    out = []
    for role, path in found:
        if not path.exists():
            continue
        c = load_cert(path)
        cn = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        out.append(Identity(role, str(cn), c.serial_number, key_type_of(c.public_key()),
                            c.not_valid_after_utc, c.serial_number in revoked, path))
    return out
