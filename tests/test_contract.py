"""The device-host contract: firmware/contract.py (the board) and host_tools/contract.py (the host) state
the same facts, each side states them once, and the board gets the file."""
import ast
import json
import shutil
import sys
from pathlib import Path

import pytest

from host_tools import contract as host_contract
from host_tools.flash import firmware_module

ROOT = Path(__file__).resolve().parent.parent

# host names derived from the facts compared below (or helpers): not facts of their own
HOST_DERIVED = {"TELEMETRY", "STATUS", "DEVICE_LEAVES", "OPERATOR_LEAVES", "ID_FIELD", "SEQ_FIELD", "TS_FIELD", "UPTIME_FIELD",
                "STATUS_FIELD", "STATUSES", "CRED_FILES", "device_topic", "HEAP_FIELD", "RSSI_FIELD",
                "RECONNECTS_FIELD", "QUEUED_FIELD", "CERT_DAYS_FIELD", "RESET_KEY", "FW_KEY", "BOARD_KEY", "MP_KEY",
                "BOOTS_KEY", "CERT_KEY", "CONFIG_KEY"}
# what the online document carries (any values): reset cause, firmware version, board, MicroPython, boot count,
# certificate serial, remote config version in use
ONLINE = ("watchdog", "9.8.7", "esp32_s3", "1.24.1", 12, "1f3a", 3)
REFUSED = {"version": 4, "key": "interval_s", "reason": "key 'interval_s' in remote config 4 is 0"}
CERT_REFUSED = {"serial": "7b", "reason": "expired on 2025-01-01 00:00:00 UTC: issue a new one"}
# facts both sides spell the same way; the status documents are compared parsed
SAME = ("ROOT", "TELEMETRY_LEAF", "STATUS_LEAF", "DEFAULT_PORT", "READING_FIELDS", "ERROR_FIELD", "STATUS_OK",
        "STATUS_SENSOR_ERROR", "HEALTH_FIELDS", "FW_VERSION", "CONFIG_PATH", "CERT_DIR", "CERT_FILE", "KEY_FILE",
        "CA_FILE", "CONFIG_LEAF", "REMOTE_PATH", "CERT_LEAF", "CERT_NEW")


class Reads:
    """A module whose attribute reads are recorded: shows that every fact of a side was compared."""

    def __init__(self, mod):
        self.mod, self.names = mod, set()

    def __getattr__(self, name):
        self.names.add(name)
        return getattr(self.mod, name)


def public(mod) -> set:
    return {n for n in vars(mod) if not n.startswith("_")}


def board_facts(fw) -> dict:
    """The board's facts in the host's terms: its status payloads parsed as a subscriber reads them."""
    facts = {n: getattr(fw, n) for n in SAME}
    online = json.loads(fw.STATUS_ONLINE % (*ONLINE, ""))
    facts["status online"] = online
    facts["online key order"] = list(online)
    # after a refused remote config: the same document with what was refused; the firmware (remote.py)
    # writes the refusal with json.dumps, so only its place in the template is the contract's
    facts["status refused"] = json.loads(fw.STATUS_ONLINE % (*ONLINE, fw.STATUS_REFUSED % (
        REFUSED["version"], json.dumps(REFUSED["key"]), json.dumps(REFUSED["reason"]))))
    # after a refused certificate (renew.py), alone and after a refused config
    cert = fw.STATUS_CERT_REFUSED % (CERT_REFUSED["serial"], json.dumps(CERT_REFUSED["reason"]))
    facts["status cert refused"] = json.loads(fw.STATUS_ONLINE % (*ONLINE, cert))
    facts["status both refused"] = json.loads(fw.STATUS_ONLINE % (*ONLINE, fw.STATUS_REFUSED % (
        REFUSED["version"], json.dumps(REFUSED["key"]), json.dumps(REFUSED["reason"])) + cert))
    facts["run-time part"] = list(json.loads("{" + (fw.STATUS_ONLINE % (*ONLINE, ""))[
        (fw.STATUS_ONLINE % (*ONLINE, "")).find(fw.STATUS_TAIL) + 1:]))
    facts["config document keys"] = fw.CONFIG_DOC
    facts["status lost"] = json.loads(fw.STATUS_LOST)
    facts["status stopped"] = json.loads(fw.STATUS_STOPPED)
    facts["status sleeping"] = json.loads(fw.STATUS_SLEEPING)
    return facts


def host_facts(h) -> dict:
    facts = {n: getattr(h, n) for n in SAME}
    facts["status online"] = dict(zip(h.ONLINE_KEYS, (h.ONLINE, *ONLINE)))
    facts["online key order"] = list(h.ONLINE_KEYS)
    facts["status refused"] = {**facts["status online"],
                               h.REFUSED_KEY: {h.VERSION_KEY: 4, h.KEY_KEY: "interval_s", h.REASON_KEY: REFUSED["reason"]}}
    cert = {h.CERT_REFUSED_KEY: {h.SERIAL_KEY: CERT_REFUSED["serial"], h.REASON_KEY: CERT_REFUSED["reason"]}}
    facts["status cert refused"] = {**facts["status online"], **cert}
    facts["status both refused"] = {**facts["status refused"], **cert}
    facts["run-time part"] = [h.CERT_KEY, h.CONFIG_KEY]  # what the device sets anew (it keeps the rest)
    facts["config document keys"] = (h.VERSION_KEY, h.SET_KEY)
    facts["status lost"] = {h.STATE_KEY: h.OFFLINE, h.REASON_KEY: h.LOST}
    facts["status stopped"] = {h.STATE_KEY: h.OFFLINE, h.REASON_KEY: h.STOPPED}
    facts["status sleeping"] = {h.STATE_KEY: h.OFFLINE, h.REASON_KEY: h.SLEEPING}
    return facts


def mismatches(board: dict, host: dict) -> list:
    """One line per fact the two sides state differently (or only one side states)."""
    none = object()
    return [f"{k}: board {board.get(k, '(missing)')!r}, host {host.get(k, '(missing)')!r}"
            for k in sorted(board.keys() | host.keys()) if board.get(k, none) != host.get(k, none)]


def load_board_contract(root=ROOT):
    return firmware_module("contract", root)


def test_board_and_host_state_the_same_facts():
    fw, h = Reads(load_board_contract()), Reads(host_contract)
    board, host = board_facts(fw), host_facts(h)
    assert mismatches(board, host) == []
    assert len(board) == 29 and board["DEFAULT_PORT"] == 8883 and board["status lost"] == {"state": "offline",
                                                                                             "reason": "lost"}
    # every fact either side states was compared: a new one must be added on both sides and above
    assert fw.names == public(fw.mod), public(fw.mod) ^ fw.names
    assert h.names | HOST_DERIVED == public(host_contract), public(host_contract) ^ (h.names | HOST_DERIVED)
    assert host_contract.STATUSES == (host_contract.STATUS_OK, host_contract.STATUS_SENSOR_ERROR)
    assert host_contract.CRED_FILES == (host_contract.CERT_FILE, host_contract.KEY_FILE, host_contract.CA_FILE)
    assert host_contract.HEALTH_FIELDS == (host_contract.HEAP_FIELD, host_contract.RSSI_FIELD,
                                           host_contract.RECONNECTS_FIELD, host_contract.QUEUED_FIELD,
                                           host_contract.CERT_DAYS_FIELD)
    assert host_contract.ONLINE_KEYS == (host_contract.STATE_KEY, host_contract.RESET_KEY, host_contract.FW_KEY,
                                         host_contract.BOARD_KEY, host_contract.MP_KEY, host_contract.BOOTS_KEY,
                                         host_contract.CERT_KEY, host_contract.CONFIG_KEY)
    assert board["status online"]["boots"] == 12 and board["status online"]["fw"] == "9.8.7"


def test_the_firmware_reports_the_host_tools_version():
    import host_tools
    assert load_board_contract().FW_VERSION == host_tools.__version__ == host_contract.FW_VERSION


@pytest.mark.parametrize("old,new,line", [
    ("DEFAULT_PORT = 8883", "DEFAULT_PORT = 8884", "DEFAULT_PORT: board 8884, host 8883"),
    ('"uptime_s", "status")', '"status", "uptime_s")',
     "READING_FIELDS: board ('device_id', 'seq', 'ts', 'status', 'uptime_s'), host ('device_id', 'seq', 'ts', "
     "'uptime_s', 'status')"),
    ('"reason":"lost"', '"reason":"gone"', "status lost: board {'state': 'offline', 'reason': 'gone'}, host "),
    ('CERT_DIR = "/certs"', 'CERT_DIR = "/cert"', "CERT_DIR: board '/cert', host '/certs'"),
    ('"reconnects", "queued"', '"queued", "reconnects"', "HEALTH_FIELDS: board ('heap_free', 'rssi', 'queued'"),
])
def test_a_changed_fact_on_one_side_is_caught(tmp_path, old, new, line):
    # the negative control: a doctored copy of firmware/contract.py differs from the host in that fact alone
    (tmp_path / "firmware").mkdir()
    src = (ROOT / "firmware" / "contract.py").read_text()
    assert src.count(old) == 1
    (tmp_path / "firmware" / "contract.py").write_text(src.replace(old, new))
    found = mismatches(board_facts(load_board_contract(tmp_path)), host_facts(host_contract))
    assert len(found) == 1 and found[0].startswith(line), found


def test_the_board_contract_is_plain_constants():
    # imported by app, config, creds, session and reasons on a board with ~100 KB of heap: no code
    tree = ast.parse((ROOT / "firmware" / "contract.py").read_text())
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"firmware/contract.py line {node.lineno}: only NAME = constant"
        assert isinstance(ast.literal_eval(node.value), (str, bytes, int, tuple)), node.lineno


def test_the_outbox_strips_what_every_reading_starts_with():
    # the outbox stores a reading without its constant '{"device_id":"<id>","seq":' (flash wear): it spells
    # that prefix itself, so it must be the first two fields, in this order (app.py builds them so)
    first, second = load_board_contract().READING_FIELDS[:2]
    src = (ROOT / "firmware" / "outbox.py").read_text()
    assert f"""'{{"{first}":"%s",'""" in src and f"""b'"{second}":%d,'""" in src


# ---------------------------------------------------------------------------------------------------
# Nothing else spells the facts: a literal here is a second source that the test above cannot see.

SUBSTRINGS = ("telemetry", "/certs", ".der", "config.json", '"state"')  # anywhere inside a literal
WHOLE = {"devices", "seq", "ts", "uptime_s", "status", "error", "ok", "sensor_error", "state", "reset", "reason",
         "online", "offline", "lost", "stopped", "heap_free", "rssi", "reconnects", "queued", "cert_days",
         "boots", "refused"}  # a literal that is exactly this
NUMBERS = {8883}
# device_id is also the config key of that name (cfg["device_id"]): allowed. verify's own vocabulary has a
# "status" (the kind of a message, a column of its table) that is not the reading's field.
# "rssi" is also the ESP32 port's wlan.status() parameter; "queued" a word in app.py's log line.
ALLOWED = {"host_tools/verify.py": {"status"}, "boards/_esp32.py": {"rssi"}, "firmware/app.py": {"queued"}}


def literals(src: str) -> list:
    """(line, value) of every str, bytes and int constant in the code; docstrings left out."""
    tree = ast.parse(src)
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docs
            and isinstance(n.value, (str, bytes, int)) and not isinstance(n.value, bool)]


def spelled(src: str, allowed=frozenset()) -> list:
    """The contract facts a module spells out itself, as (line, literal)."""
    out = []
    for line, v in literals(src):
        if isinstance(v, int):
            hit = v in NUMBERS
        else:
            s = v.decode("latin-1") if isinstance(v, bytes) else v
            hit = any(w in s for w in SUBSTRINGS) or (s in WHOLE and s not in allowed)
        if hit:
            out.append((line, v))
    return sorted(out, key=lambda x: x[0])


def test_the_scanner_finds_each_kind_of_spelling():
    # the positive control: doctored code with one spelling per line is caught line by line, its clean twin not
    bad = ('TOPIC = pre + "/telemetry"\nPORT = 8883\nr["status"] = "ok"\nf = open("/certs/" + name)\n'
           'ONLINE = b\'{"state":"online"}\'\nx = 1 if k == "seq" else 2\n')
    assert [line for line, _ in spelled(bad)] == [1, 2, 3, 3, 4, 5, 6]
    good = ('"""Readings go to devices/<id>/telemetry on 8883."""\nTOPIC = pre + TELEMETRY_LEAF\nPORT = DEFAULT_PORT\n'
            'r[_STATUS] = STATUS_OK\nlog("seq %d sent" % n)\nx = cfg["device_id"]\n')
    assert spelled(good) == []
    assert len(spelled((ROOT / "firmware" / "contract.py").read_text())) >= 15  # it finds the facts where they live


def _modules():
    fw = [p for p in sorted((ROOT / "firmware").glob("*.py")) if p.name != "contract.py"]
    boards = sorted((ROOT / "boards").glob("*.py"))
    host = [ROOT / "host_tools" / "flash.py", ROOT / "host_tools" / "verify.py"]
    return fw + boards + host


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_other_module_spells_a_contract_fact(path):
    rel = str(path.relative_to(ROOT))
    found = spelled(path.read_text(), ALLOWED.get(rel, frozenset()))
    assert found == [], f"{rel} spells contract facts itself (use contract.py): " + \
        ", ".join(f"line {line} {v!r}" for line, v in found)


# ---------------------------------------------------------------------------------------------------
# The board gets the file, and every module it imports.

@pytest.mark.parametrize("mpy", [False, True])
def test_flash_writes_the_contract_and_everything_each_module_imports(fleet, tmp_path, mpy):
    from host_tools.flash import build_config, plan
    cfg = build_config("dev1", "localhost", 8883, 30)
    for board in ("unix", "esp32_generic", "esp32_s3", "esp32_c3"):
        files = plan("demo", "dev1", board, cfg, mpy, tmp_path)
        ext = ".mpy" if mpy else ".py"
        assert "/contract" + ext in files
        if not mpy:
            assert files["/contract.py"] == (ROOT / "firmware" / "contract.py").read_bytes()
        on_board = {p[1:].rsplit(".", 1)[0] for p in files if p.count("/") == 1 and p.endswith((".py", ".mpy"))}
        ours = {p.stem for d in ("firmware", "boards") for p in (ROOT / d).glob("*.py")}
        for name in on_board:
            src = ROOT / "firmware" / f"{name}.py"
            if not src.exists():
                src = ROOT / "boards" / ("%s.py" % board if name == "board" else f"{name}.py")
            for node in ast.walk(ast.parse(src.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) else []
                missing = {n for n in names if n in ours} - on_board
                assert not missing, f"{board}: {src.name} imports {missing}, which flash does not write"
        sensors = {p[len("/_sensor_"):].rsplit(".", 1)[0] for p in files if p.startswith("/_sensor_")}
        expected = {"unix": {"sim", "sim_faulty"}}.get(board, {"dht22", "ds18b20", "internal"})
        assert sensors == expected, (board, sorted(files))  # all the board's sensors, whichever is configured


def test_the_host_checks_config_json_with_the_boards_own_contract(tmp_path):
    # the firmware's config.py imports contract: the host loads it with the board's contract, not its own
    shutil.copytree(ROOT / "firmware", tmp_path / "firmware")
    p = tmp_path / "firmware" / "contract.py"
    p.write_text(p.read_text().replace("DEFAULT_PORT = 8883", "DEFAULT_PORT = 1884"))
    assert firmware_module("config", tmp_path).DEFAULTS["broker_port"] == (1884, int)
    assert firmware_module("config").DEFAULTS["broker_port"] == (8883, int)
    assert "contract" not in sys.modules  # nothing left behind to shadow a later import
