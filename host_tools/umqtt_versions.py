"""Which umqtt.simple a board runs, and laying one out as a board's frozen package.

A real ESP32 runs the umqtt.simple that micropython-lib had when its MicroPython release was built
(`FIRMWARE_UMQTT`). The virtual board freezes either sensorpub's own stand-in, pinned to one of
those versions (`STANDIN_VERSIONS`), or micropython-lib's real file, which is never part of this
project: test runs find real copies under $UMQTT_VERSIONS (a folder of <X.Y.Z>/umqtt/simple.py).
`install_umqtt` writes whichever is chosen as a `umqtt` package.
"""
import os
import shutil
from pathlib import Path
from typing import Dict, Optional, Tuple

from .errors import CommandError

#: MicroPython release (major.minor) -> the umqtt.simple its esp32 port freezes (boards/manifest.py)
FIRMWARE_UMQTT: Dict[str, str] = {
    "1.23": "1.4.0", "1.24": "1.4.0",
    "1.25": "1.6.0", "1.26": "1.6.0",
    "1.27": "1.7.0", "1.28": "1.7.0",
}
#: the oldest supported MicroPython: the first whose ESP32 build freezes umqtt.simple 1.4.0
MIN_MICROPYTHON: Tuple[int, int] = (1, 23)
#: the umqtt.simple versions the stand-in can play; the last is what it plays unless pinned
STANDIN_VERSIONS: Tuple[str, ...] = ("1.4.0", "1.6.0", "1.7.0", "1.8.0")
#: sensorpub's stand-in package (umqtt/__init__.py, umqtt/simple.py) among the virtual board's frozen modules
STANDIN_DIR: Path = Path(__file__).resolve().parent / "vboard" / "frozen" / "umqtt"

_SOURCES = "standin, standin-X.Y.Z, real-X.Y.Z, or a folder holding umqtt/simple.py"


def real_versions_dir() -> Optional[Path]:
    """The folder $UMQTT_VERSIONS names (holding <X.Y.Z>/umqtt/simple.py), or None when it is unset or empty.

    Raises CommandError if it is set to something that is not a folder."""
    value = os.environ.get("UMQTT_VERSIONS", "")
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise CommandError(f"UMQTT_VERSIONS={value} is not a folder: point it at one holding "
                           "<version>/umqtt/simple.py (e.g. ../shared/umqtt-simple/versions)")
    return path


def real_versions() -> Dict[str, Path]:
    """{version: folder holding umqtt/simple.py} for every such subfolder of $UMQTT_VERSIONS; {} if none."""
    base = real_versions_dir()
    if base is None:
        return {}
    return {p.name: p for p in sorted(base.iterdir()) if (p / "umqtt" / "simple.py").is_file()}


def install_umqtt(dest: Path, source: str) -> str:
    """Write the package dest/umqtt/ for `source` and return a few words saying which client it is.

    source is one of
      "standin"         sensorpub's stand-in as it ships (plays 1.8.0);
      "standin-X.Y.Z"   the stand-in pinned to version X.Y.Z (umqtt/standin_version.py);
      "real-X.Y.Z"      micropython-lib's own file from $UMQTT_VERSIONS;
      a folder          holding umqtt/simple.py (or simple.mpy), e.g. what
                        `micropython -m mip install umqtt.simple` fetched.
    Raises CommandError, in one line, for anything else or a version that is not available."""
    if not source:
        raise CommandError(f"umqtt source is empty: give {_SOURCES}")
    if source == "standin" or source.startswith("standin-"):
        version = source[len("standin-"):] if source != "standin" else STANDIN_VERSIONS[-1]
        if version not in STANDIN_VERSIONS:
            raise CommandError(f"umqtt source {source!r}: the stand-in plays umqtt.simple "
                               f"{', '.join(STANDIN_VERSIONS)}")
        out = _fresh_package(dest)
        shutil.copy(STANDIN_DIR / "simple.py", out / "simple.py")
        if source != "standin":
            (out / "standin_version.py").write_text(f'VERSION = "{version}"\n')
        return f"umqtt.simple {version} (sensorpub stand-in)"
    if source.startswith("real-"):
        version = source[len("real-"):]
        found = real_versions()
        if version not in found:
            where = os.environ.get("UMQTT_VERSIONS") or "not set"
            raise CommandError(f"umqtt source {source!r}: no real umqtt.simple {version} under UMQTT_VERSIONS "
                               f"({where}; found: {', '.join(found) or 'none'})")
        out = _fresh_package(dest)
        shutil.copy(found[version] / "umqtt" / "simple.py", out / "simple.py")
        return f"umqtt.simple {version} (micropython-lib)"
    folder = Path(source).expanduser() / "umqtt"
    for name in ("simple.py", "simple.mpy"):
        if (folder / name).is_file():
            out = _fresh_package(dest)
            shutil.copy(folder / name, out / name)
            return f"umqtt.simple from {source}"
    raise CommandError(f"umqtt source {source!r}: give {_SOURCES}")


def _fresh_package(dest: Path) -> Path:
    """An empty package dest/umqtt/ (just __init__.py), replacing whatever was there."""
    out = Path(dest) / "umqtt"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "__init__.py").write_text("")
    return out
