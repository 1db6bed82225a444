"""Where one fleet's PKI lives: certs/<fleet>/ca, server, verifier[-NAME], devices/<name> (certs/README.md)."""
from dataclasses import dataclass
from pathlib import Path
from typing import List

from .errors import CommandError
from .keys import load_cert, load_key
from .paths import VERIFIER_CN, check_name, fleet_dir


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

    @property
    def devices_dir(self) -> Path:
        return self.root / "devices"

    def device_dir(self, name: str) -> Path:
        return self.devices_dir / check_name("device", name)

    def require_ca(self):
        if not self.ca_cert.exists():
            raise CommandError(f"fleet {self.name!r} has no CA ({self.ca_cert} missing): run 'sensorpub pki init --fleet {self.name}'")
        return load_cert(self.ca_cert), load_key(self.ca_key)
