"""Where sensorpub keeps its files: certs/ and run/ under SENSORPUB_HOME (default: cwd)."""
import os
import re
from pathlib import Path

from .errors import CommandError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
VERIFIER_CN = "sensorpub-verifier"
DEFAULT_FLEET = "demo"  # --fleet when none is given


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
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):  # fullmatch: '$' would let "dev1\n" in
        raise CommandError(
            f"invalid {kind} name {name!r}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        )
    if kind != "verifier" and name.startswith(VERIFIER_CN):
        raise CommandError(f"invalid {kind} name {name!r}: names starting {VERIFIER_CN!r} are reserved for "
                           "verifier identities")
    return name


def verifier_cn(name: str = "") -> str:
    """The verifier's certificate CN (its MQTT username and client id): one per host-side consumer."""
    return f"{VERIFIER_CN}-{check_name('verifier', name)}" if name else VERIFIER_CN


def fleet_dir(fleet: str) -> Path:
    return home() / "certs" / check_name("fleet", fleet)


def run_dir(*parts: str) -> Path:
    """run/<parts>: 0700, as it may hold keys and the Wi-Fi password; run/ itself only lets the owner list it."""
    top = home() / "run"
    top.mkdir(parents=True, exist_ok=True)
    os.chmod(top, 0o711)  # entered, not listed, by a broker that dropped root
    d = top.joinpath(*parts)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if d != top:
        os.chmod(d, 0o700)
    return d
