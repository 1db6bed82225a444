"""Keys and certificate files: make a key, encode it, load certificates and keys with one clear line
for each way a file can be wrong, and write files atomically (private ones 0600, umask or not)."""
import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import CommandError

KEY_TYPES = ("ec256", "rsa2048")


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


def _write(path, data: bytes, private: bool, flags: int) -> None:
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, mode)
    try:
        os.fchmod(fd, mode)  # umask-proof, before any byte is in it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    """Replace `path` at once (written beside it, then renamed); 0600 when `private`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    _write(tmp, data, private, os.O_TRUNC)
    os.replace(tmp, path)


def create_file(path, data: bytes, private: bool = False) -> None:
    """A new file in a directory nobody else writes to (a staged identity): as write_file, minus the rename.
    Refuses to overwrite anything."""
    _write(path, data, private, os.O_EXCL)


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


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
