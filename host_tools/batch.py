"""Many device identities in one run: the batch's names, the CA loaded once, each identity all-or-nothing.

`sensorpub pki device a b c` and `sensorpub pki device --count N --prefix dev` come here. Every name is checked
before anything is written; each identity is written with atomic.write_dir, so a run killed at any point
leaves whole identities only, and running the same batch again skips those that exist. With `force` the
existing ones are re-issued instead: their certificates are revoked first, as `pki device NAME --force` does.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from cryptography.x509.oid import ExtendedKeyUsageOID

from . import pki
from .atomic import Files, clean_leftovers, write_dir
from .crl import revoke_serials
from .errors import CommandError
from .fleet import Fleet
from .keys import KEY_TYPES, load_cert, new_key
from .paths import check_name

MAX_BATCH = 100_000  # names in one run
MIN_DIGITS = 3       # --count 12 makes dev001..dev012


@dataclass
class Outcome:
    """What a batch did with one name: "created", "replaced" (it existed; `force`) or "skipped" (it existed)."""
    name: str
    status: str
    path: Path


def numbered(count: int, prefix: str = "dev", start: int = 1) -> List[str]:
    """PREFIX + start..start+count-1, zero-padded to the digits of the last number, at least MIN_DIGITS."""
    if not 1 <= count <= MAX_BATCH:
        raise CommandError(f"--count {count}: give 1 to {MAX_BATCH} (split a larger batch)")
    if start < 0:
        raise CommandError(f"--start {start}: give 0 or more")
    last = start + count - 1
    width = max(MIN_DIGITS, len(str(last)))
    return [f"{prefix}{i:0{width}d}" for i in range(start, last + 1)]


def batch_names(names: Sequence[str], count: Optional[int] = None, prefix: Optional[str] = None,
                start: Optional[int] = None) -> List[str]:
    """The names one `pki device` run makes: NAMEs as given, or --count numbered ones; all checked here."""
    if count is None:
        if prefix is not None or start is not None:
            raise CommandError("--prefix and --start go with --count N: add --count, or give names instead")
        if not names:
            raise CommandError("give one or more device names, or --count N (see sensorpub pki device --help)", 2)
        out = list(names)
    elif names:
        raise CommandError(f"device names ({names[0]!r}, ...) and --count: give one or the other")
    else:
        out = numbered(count, "dev" if prefix is None else prefix, 1 if start is None else start)
    if len(out) > MAX_BATCH:
        raise CommandError(f"{len(out)} names in one run: at most {MAX_BATCH}; split the batch")
    _check_all(out)
    return out


def _check_all(names: List[str]) -> None:
    """Every name valid and given once: one line naming the first that is not."""
    seen = set()
    for n in names:
        check_name("device", n)
        if n in seen:
            raise CommandError(f"device name {n!r} is given twice: give each name once")
        seen.add(n)


class Signer:
    """The fleet CA, loaded once for the whole batch, and the certificate template its identities share."""

    def __init__(self, fleet: str, key_type: str = "ec256"):
        if key_type not in KEY_TYPES:
            raise CommandError(f"unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")
        self.fleet, self.key_type = fleet, key_type
        self.ca_cert, ca_key = Fleet(fleet).require_ca()
        self.ca = pki.ca_files(self.ca_cert, der=True)
        self.template = pki.LeafTemplate.of(self.ca_cert, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH,
                                            is_ec=key_type.startswith("ec"))

    def files(self, name: str) -> Files:
        """A new key and certificate for device `name`: its directory's files."""
        key = new_key(self.key_type)
        cert = self.template.sign(pki._name(name, self.fleet), key.public_key(), pki._client_san(self.fleet, name))
        return pki.identity_files("client", key, cert, self.ca, der=True)


def _quiet(_msg: str) -> None:
    pass


def existing(parent: Path, names: Sequence[str]) -> Tuple[set, set]:
    """Which of `names` have a directory under `parent`, and which of those an identity (a certificate or a
    key, as `pki device NAME` checks)."""
    try:
        present = set(os.listdir(parent)).intersection(names)
    except FileNotFoundError:
        return set(), set()
    return present, {n for n in present if (parent / n / "client.pem").exists()
                     or (parent / n / "client.key.pem").exists()}


def _revoke_replaced(fleet: str, parent: Path, names: set, progress) -> Dict[str, Tuple[int, bytes]]:
    """Revoke the certificates `force` replaces, in one CRL update: name -> (serial, PEM) for history/."""
    old = {}
    for n in sorted(names):
        path = parent / n / "client.pem"
        if path.exists():
            old[n] = (load_cert(path).serial_number, path.read_bytes())
    if old:
        revoke_serials(fleet, [serial for serial, _ in old.values()])
        progress(f"revoked the {len(old)} certificate(s) being replaced")
    return old


def issue_devices(fleet: str, names: Sequence[str], key_type: str = "ec256", force: bool = False,
                  progress: Callable[[str], None] = _quiet,
                  done: Optional[Callable[[Outcome], None]] = None) -> List[Outcome]:
    """Make the device identities `names` that do not exist yet; with `force`, re-issue those that do.
    `done` hears of each name, in order, once its identity is on disk (or it was skipped)."""
    _check_all(list(names))
    signer = Signer(fleet, key_type)
    parent = Fleet(fleet).devices_dir
    tidied = clean_leftovers(parent)
    if tidied:
        progress(f"tidied {tidied} identity directories an interrupted run left behind")
    present, there = existing(parent, names)
    old = _revoke_replaced(fleet, parent, there, progress) if force else {}
    out = []
    for name in names:
        if name in there and not force:
            outcome = Outcome(name, "skipped", parent / name)
        else:
            files = signer.files(name)
            if name in old:
                serial, pem = old[name]
                files[f"history/{serial:x}.pem"] = (pem, False)
            write_dir(parent / name, files, replace=name in present)
            outcome = Outcome(name, "replaced" if name in there else "created", parent / name)
        out.append(outcome)
        if done:
            done(outcome)
    return out
