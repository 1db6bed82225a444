"""Where sensorpub keeps its files: certs/ and run/ under SENSORPUB_HOME (default: cwd)."""
import os
import re
from pathlib import Path

from .errors import CommandError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
VERIFIER_CN = "sensorpub-verifier"


def home() -> Path:
    return Path(os.environ.get("SENSORPUB_HOME") or os.getcwd()).resolve()


def project_root() -> Path:
    """The checkout holding firmware/ and boards/ (the package is installed editable)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "firmware").is_dir():
        raise CommandError(f"firmware/ not found next to {root}: install sensorpub from a checkout with 'make setup'")
    return root


def check_name(kind: str, name: str) -> str:
    """Names end up in topics, file names and certificate CNs: keep them boring."""
    if not _NAME_RE.match(name or ""):
        raise CommandError(
            f"invalid {kind} name {name!r}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        )
    if name == VERIFIER_CN:
        raise CommandError(f"invalid {kind} name {name!r}: it is reserved for the verifier identity")
    return name


def fleet_dir(fleet: str) -> Path:
    return home() / "certs" / check_name("fleet", fleet)


def run_dir(*parts: str) -> Path:
    d = home().joinpath("run", *parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
