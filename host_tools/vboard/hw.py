"""The emulated ESP32's hardware state and faults: ROM/hw.json, written only by the host.

The board-side emulation (host_tools/vboard/esp32/) re-reads hw.json when it needs the state, so a
test or `sensorpub vboard fault ...` changes the hardware under a running firmware: the access point
goes down, a sensor stops answering, NTP becomes unreachable. Writes are atomic (tmp + rename), so the
board never sees half a file (and keeps its last good state if it ever did).

Fault strings for the CLI are KEY=VALUE with a dotted key and a JSON (or bare string) value:
"wifi.up=false", "dht22.fault=timeout", "ntp.reachable=false", "wifi.password=wrong".
"""
import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Tuple

from ..errors import CommandError

HW_FILE = "hw.json"


def _crc8(data: bytes) -> int:
    """Dallas/Maxim 1-Wire CRC-8 (x^8 + x^5 + x^4 + 1, reflected)."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def ds18b20_rom(serial_hex: str) -> str:
    """A DS18B20 64-bit ROM code as hex: family 0x28, the 6-byte serial, then its CRC-8."""
    body = bytes([0x28]) + bytes.fromhex(serial_hex)
    if len(body) != 7:
        raise ValueError("a DS18B20 serial is 6 bytes (12 hex digits)")
    return (body + bytes([_crc8(body)])).hex()


DEFAULT_HW: Dict[str, Any] = {
    # one access point in range; the board joins it `join_ms` after connect() when ssid and password
    # match; a scan() blocks `scan_ms`, as an ESP32's all-channel scan does
    "wifi": {"ssid": "sensorpub-lab", "password": "sensorpub-wifi", "up": True, "in_range": True,
             "rssi": -58, "channel": 6, "bssid": "a4:cf:12:5b:20:01", "join_ms": 300, "scan_ms": 1500,
             "ip": "192.168.4.23", "netmask": "255.255.255.0", "gateway": "192.168.4.1", "dns": "192.168.4.1"},
    # sensors answer on their pin; values drift by up to +-drift (deterministic from the read count)
    "dht22": {"pin": 4, "present": True, "temp_c": 21.4, "humidity_pct": 47.5, "drift": 0.2, "fault": None},
    "dht11": {"pin": 16, "present": False, "temp_c": 22.0, "humidity_pct": 45.0, "drift": 0.0, "fault": None},
    "ds18b20": {"pin": 4, "present": True, "temp_c": 22.5, "drift": 0.1, "fault": None,
                "rom": ds18b20_rom("ff4c6b911603")},
    "mcu": {"temp_c": 43.0},                     # esp32.raw_temperature() / mcu_temperature()
    "ntp": {"reachable": True, "offset_s": 0.0},  # NTP answers with the host's UTC clock + offset_s
    "pins": {},                                  # input levels by GPIO number: {"0": 1}
}

# allowed values of the "fault" keys: None is healthy
FAULTS: Dict[str, Tuple[Any, ...]] = {
    "dht22": (None, "timeout", "garbage", "hang"),   # hang: a stuck driver, for the watchdog
    "dht11": (None, "timeout", "garbage", "hang"),
    "ds18b20": (None, "garbage", "absent"),
}


def read(rom: Path) -> Dict[str, Any]:
    """The current hardware state: ROM/hw.json over the defaults (a missing file gives DEFAULT_HW)."""
    state = copy.deepcopy(DEFAULT_HW)
    try:
        saved = json.loads((Path(rom) / HW_FILE).read_text())
    except FileNotFoundError:
        return state
    except ValueError as e:
        raise CommandError(f"{Path(rom) / HW_FILE} is not valid JSON ({e}): rewrite it with 'vboard start --erase'")
    _merge(state, saved)
    return state


def write(rom: Path, state: Dict[str, Any]) -> None:
    """Write the whole state atomically (tmp file + rename), so the board never reads half a file."""
    rom = Path(rom)
    rom.mkdir(parents=True, exist_ok=True)
    tmp = rom / (HW_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, rom / HW_FILE)


def update(rom: Path, patch: Dict[str, Any]) -> Dict[str, Any]:
    """Validate `patch` against the known keys, deep-merge it into the current state, write, return it.

    An unknown key or a value of the wrong type raises CommandError naming the key and what is valid."""
    validate(patch)
    state = read(rom)
    _merge(state, patch)
    write(rom, state)
    return state


def validate(patch: Dict[str, Any], schema: Dict[str, Any] = DEFAULT_HW, prefix: str = "") -> None:
    """Raise CommandError for a key DEFAULT_HW does not have or a value of the wrong kind."""
    if not isinstance(patch, dict):
        raise CommandError(f"hw key '{prefix.rstrip('.') or '(top)'}' takes an object of keys")
    for key, value in patch.items():
        name = prefix + key
        if prefix == "pins.":
            if not key.isdigit() or value not in (0, 1):
                raise CommandError(f"hw key '{name}': give a GPIO number and a level 0 or 1, e.g. pins.0=1")
            continue
        if key not in schema:
            where = f"under '{prefix.rstrip('.')}'" if prefix else "at the top"
            raise CommandError(f"hw key '{name}' is unknown: valid keys {where} are {', '.join(sorted(schema))}")
        want = schema[key]
        section = prefix.rstrip(".")
        if key == "fault" and section in FAULTS:
            if value not in FAULTS[section]:
                shown = ", ".join("null" if v is None else str(v) for v in FAULTS[section])
                raise CommandError(f"hw key '{name}' is {value!r}: valid faults are {shown}")
        elif isinstance(want, dict):
            validate(value, want, name + ".")
        elif not _same_kind(want, value):
            raise CommandError(f"hw key '{name}' must be {type(want).__name__}, got {json.dumps(value)}")


def _same_kind(want: Any, value: Any) -> bool:
    if isinstance(want, bool) or isinstance(value, bool):
        return isinstance(want, bool) and isinstance(value, bool)
    if isinstance(want, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(want))


def _merge(into: Dict[str, Any], patch: Dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def parse_fault(text: str) -> Dict[str, Any]:
    """'wifi.up=false' -> {'wifi': {'up': False}}; the value is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise CommandError(f"fault {text!r}: write KEY=VALUE with a dotted key, e.g. wifi.up=false "
                           f"or dht22.fault=timeout")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    patch: Dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        patch = {part: patch}
    return patch


def parse_faults(items: Iterable[str]) -> Dict[str, Any]:
    """Several fault strings merged into one validated patch (later ones win)."""
    out: Dict[str, Any] = {}
    for item in items:
        _merge(out, parse_fault(item))
    validate(out)
    return out
