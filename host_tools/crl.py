"""The fleet's certificate revocation list: who is revoked, signing it anew, revoking a device.

The broker reads certs/<fleet>/ca/crl.pem; an expired CRL locks every client out, so `broker start`
re-signs one that nears its next_update.
"""
import datetime as dt
from pathlib import Path
from typing import Dict, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .errors import CommandError
from .keys import load_cert, now, write_file
from .fleet import Fleet

CRL_DAYS = 365         # next_update of a CRL we write
CRL_REFRESH_DAYS = 30  # `broker start` rewrites a CRL closer than this to its next_update


def _revoked(fleet: str) -> Dict[int, dt.datetime]:
    """serial -> revocation date, from the fleet CRL."""
    f = Fleet(fleet)
    if not f.crl.exists():
        return {}
    crl = x509.load_pem_x509_crl(f.crl.read_bytes())
    return {r.serial_number: r.revocation_date_utc for r in crl}


def revoked_serials(fleet: str) -> set:
    return set(_revoked(fleet))


def write_crl(fleet: str, serials, days: int = CRL_DAYS) -> Path:
    """Sign the CRL anew (next_update `days` ahead); serials already listed keep their revocation date."""
    f = Fleet(fleet)
    ca_cert, ca_key = f.require_ca()
    t = now()
    dates = _revoked(fleet) if f.crl.exists() else {}
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(t - dt.timedelta(minutes=5)).next_update(t + dt.timedelta(days=days)))
    for s in sorted(serials):
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(dates.get(s, t)).build())
    write_file(f.crl, b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return f.crl


def revoke_serials(fleet: str, serials) -> None:
    write_crl(fleet, revoked_serials(fleet) | set(serials))


def refresh_crl(fleet: str, days: int = CRL_DAYS, if_within: Optional[int] = None) -> Optional[dt.datetime]:
    """Re-sign the CRL with a new next_update; with `if_within`, only when the current one ends sooner than
    that many days. Returns the new next_update, or None when nothing was done."""
    f = Fleet(fleet)
    if if_within is not None and f.crl.exists():
        crl = x509.load_pem_x509_crl(f.crl.read_bytes())
        if crl.next_update_utc and crl.next_update_utc - now() > dt.timedelta(days=if_within):
            return None
    write_crl(fleet, revoked_serials(fleet), days)
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
