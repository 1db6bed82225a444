"""`sensorpub config` against a real Mosquitto and its ACL: keys refused before anything is sent, version
numbering and merging of the retained document, the device's answer (applied, refused, none), `config get`.

The device side here is ContractDevice, a paho client with dev1's identity that answers exactly as
host_tools/contract.py says a device does; the real firmware is tests/test_remote_config.py's."""
import json
import threading

import pytest

from conftest import run_cli
from helpers import client_for
from host_tools import remote_config as rc

REASON = "key 'interval_s' in remote config 4 is 7: allowed 10 to 60"


class ContractDevice:
    """dev1 at the contract level: reads its retained config, and answers each newer version with its retained
    status: "config" = the version it runs, plus "refused" {version, key, reason} for one it refuses."""

    def __init__(self, fleet, port, running=0, refuse=()):
        self.docs, self.running, self.refuse, self.cond = [], running, set(refuse), threading.Condition()
        self.c = client_for(fleet, "dev1", port)
        self.c.publish("devices/dev1/status", json.dumps(self.status()), qos=1, retain=True).wait_for_publish(5)
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._on
        self.c.subscribe("devices/dev1/config", qos=1)
        assert subscribed.wait(5)

    def status(self, **extra):
        return {"state": "online", "reset": "power_on", "fw": "0.2.0", "board": "unix", "mp": "1.24.1",
                "boots": 1, "config": self.running, **extra}

    def _on(self, _c, _u, m):
        doc = json.loads(m.payload)
        with self.cond:
            self.docs.append(doc)
            self.cond.notify_all()
        if doc["version"] <= self.running:
            return
        bad = sorted(set(doc["set"]) & self.refuse)
        if bad:
            st = self.status(refused={"version": doc["version"], "key": bad[0], "reason": REASON})
        else:
            self.running = doc["version"]
            st = self.status()
        self.c.publish("devices/dev1/status", json.dumps(st), qos=1, retain=True)

    def stop(self):
        """Goes silent for good (disconnects; its retained status stays as it was)."""
        self.c.disconnect()
        self.c.loop_stop()


def retained(fleet, port, device="dev1"):
    """The retained config payload of `device` (None: none). The device's retained status is the marker:
    Mosquitto sends the retained messages of one SUBSCRIBE filter by filter, so once the status is here
    the config would be here before it."""
    got, cond = {}, threading.Condition()
    c = client_for(fleet, "verifier", port)

    def on(_c, _u, m):
        with cond:
            got[m.topic.rsplit("/", 1)[1]] = m.payload
            cond.notify_all()

    c.on_message = on
    c.subscribe([(f"devices/{device}/config", 1), (f"devices/{device}/status", 1)])
    with cond:
        assert cond.wait_for(lambda: "status" in got, 10), "no retained status: the marker is missing"
    c.disconnect()
    c.loop_stop()
    return got.get("config")


def config(broker, *args, timeout="20"):
    extra = ["--timeout", timeout] if args[0] == "set" else []
    return run_cli("config", *args, "--port", str(broker.port), *extra)


def one_error(r):
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.mark.parametrize("args, key", [
    (["colour=1"], "'colour'"),                        # unknown key
    (["broker_host=evil.example"], "'broker_host'"),   # NEVER_REMOTE
    (["wdt_s=0"], "'wdt_s'"),                          # a known key, not in REMOTE: a re-flash
    (["interval_s=100000"], "'interval_s'"),           # out of bounds
    (["interval_s=fast"], "'interval_s'"),             # wrong type: a string
    (["interval_s=true"], "'interval_s'"),             # a bool is not an int
    (["health_every=5", "interval_s"], "'interval_s'"),  # bad syntax, after a good one
    (["interval_s=[60]"], "interval_s"),               # not a scalar
])
def test_a_key_the_device_would_refuse_is_refused_here_and_nothing_is_sent(broker, fleet, args, key):
    dev = ContractDevice(fleet, broker.port)
    r = config(broker, "set", "--device", "dev1", *args)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert key in one_error(r)
    assert "connecting" not in r.stderr  # refused before any connection
    assert dev.docs == [] and retained(fleet, broker.port) is None
    dev.stop()


def test_versions_merge_and_the_devices_answers(broker, fleet):
    dev = ContractDevice(fleet, broker.port, refuse={"backoff_cap_s"})
    r = config(broker, "set", "--device", "dev1", "interval_s=60")
    assert (r.returncode, r.stdout) == (0, "dev1 applied config 1: interval_s=60\n"), r.stderr
    r = config(broker, "set", "--device", "dev1", "health_every=5", "probe_s=0")
    assert (r.returncode, r.stdout) == (0, "dev1 applied config 2: health_every=5 interval_s=60 probe_s=0\n"), r.stderr
    r = config(broker, "set", "--device", "dev1", "--unset", "interval_s", "--unset", "probe_s")
    assert (r.returncode, r.stdout) == (0, "dev1 applied config 3: health_every=5\n"), r.stderr
    assert dev.docs == [{"version": 1, "set": {"interval_s": 60}},
                        {"version": 2, "set": {"interval_s": 60, "health_every": 5, "probe_s": 0}},
                        {"version": 3, "set": {"health_every": 5}}]

    # the same again: nothing new to send, and the device already runs it
    r = config(broker, "set", "--device", "dev1", "health_every=5")
    assert (r.returncode, r.stdout) == (0, "dev1 applied config 3: health_every=5\n"), r.stderr
    assert "nothing to send" in r.stderr and len(dev.docs) == 3

    # --unset of a key the config does not hold: nothing sent
    r = config(broker, "set", "--device", "dev1", "--unset", "interval_s")
    assert r.returncode == 2 and "--unset interval_s" in one_error(r) and len(dev.docs) == 3

    # refused by the device: exit 5, the reason, and the version it still runs
    r = config(broker, "set", "--device", "dev1", "backoff_cap_s=120")
    assert r.returncode == 5 and r.stdout == "", r.stderr
    assert one_error(r).endswith(f"dev1 refused config 4: backoff_cap_s: {REASON}; it still runs config 3")
    assert dev.docs[-1] == {"version": 4, "set": {"health_every": 5, "backoff_cap_s": 120}}

    # the device goes silent: exit 4 after --timeout, and the document stays retained for its next connection
    dev.stop()
    r = config(broker, "set", "--device", "dev1", "--unset", "backoff_cap_s", "--json", timeout="2")
    assert r.returncode == 4, r.stderr
    assert "dev1 did not answer within 2 s" in one_error(r) and "stays retained" in one_error(r)
    out = json.loads(r.stdout)
    assert (out["version"], out["previous"], out["result"], out["running"]) == (5, 4, "no answer", 3)
    assert json.loads(retained(fleet, broker.port)) == {"version": 5, "set": {"health_every": 5}}


def test_the_next_version_is_above_what_the_device_reports(broker, fleet):
    # the retained document was cleared, but dev1 still runs config 7: version 1 would be ignored as old
    dev = ContractDevice(fleet, broker.port, running=7)
    r = config(broker, "set", "--device", "dev1", "interval_s=60", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["version"], out["previous"], out["result"], out["running"], out["set"]) == \
        (8, 0, "applied", 8, {"interval_s": 60})
    assert [d["version"] for d in dev.docs] == [8]
    dev.stop()


def test_next_version_rules():
    assert rc.next_version(None, None) == 1
    assert rc.next_version({"version": 3, "set": {}}, {"config": 2}) == 4
    assert rc.next_version({"version": 3, "set": {}}, {"config": 3, "refused": {"version": 5}}) == 6
    assert rc.next_version(None, {"state": "offline", "reason": "lost"}) == 1


def test_config_get_text_and_json(broker, fleet):
    r = config(broker, "get", "--device", "dev1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("dev1 desired: no remote config (it runs its flashed config)\n"
                        "dev1 reports: nothing (no retained status: never connected?)\n")
    dev = ContractDevice(fleet, broker.port, refuse={"probe_s"})
    assert config(broker, "set", "--device", "dev1", "interval_s=60").returncode == 0
    r = config(broker, "get", "--device", "dev1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("dev1 desired: config 1: interval_s=60\n"
                        "dev1 reports: online; runs config 1, the latest\n")
    assert config(broker, "set", "--device", "dev1", "probe_s=10").returncode == 5
    r = config(broker, "get", "--device", "dev1")
    assert r.stdout == ("dev1 desired: config 2: interval_s=60 probe_s=10\n"
                        "dev1 reports: online; runs config 1, not the latest (2)\n"
                        f"dev1 refused config 2: probe_s: {REASON}\n"), r.stderr
    r = config(broker, "get", "--device", "dev1", "--json")
    out = json.loads(r.stdout)
    assert out["desired"] == {"version": 2, "set": {"interval_s": 60, "probe_s": 10}}
    assert (out["running"], out["latest"], out["state"]) == (1, False, "online")
    assert out["refused"] == {"version": 2, "key": "probe_s", "reason": REASON}
    dev.stop()


def test_a_broker_that_drops_the_document_is_exit_3(fleet):
    # a broker still running an ACL from before remote config: the verifier may not write configs
    from conftest import free_port
    from host_tools.broker import Broker
    b = Broker("demo", port=free_port(), acl="user sensorpub-verifier\ntopic read devices/#\n"
                                             "pattern write devices/%u/status\n")
    b.start()
    try:
        dev = ContractDevice(fleet, b.port)
        r = run_cli("config", "set", "--device", "dev1", "interval_s=60", "--port", str(b.port))
        assert r.returncode == 3 and "did not pass on config 1" in one_error(r), r.stderr
        assert dev.docs == []
        dev.stop()
    finally:
        b.stop()


@pytest.mark.parametrize("args, text", [
    (["set", "--device", "dev1"], "say what to change"),
    (["set", "--device", "dev/1", "interval_s=5"], "invalid device name"),
    (["set", "--device", "dev1", "interval_s=5", "--unset", "interval_s"], "both set and --unset"),
    (["get"], "--device"),
])
def test_usage_mistakes_are_exit_2(home, args, text):
    r = run_cli("config", *args)
    assert r.returncode == 2 and text in one_error(r), r.stderr


def test_a_bad_key_already_in_the_retained_config_is_named_with_its_fix(broker, fleet):
    op = client_for(fleet, "verifier", broker.port)  # another tool wrote a key the device refuses
    op.publish("devices/dev1/config", json.dumps({"version": 2, "set": {"wdt_s": 0}}), qos=1,
               retain=True).wait_for_publish(5)
    op.disconnect()
    op.loop_stop()
    dev = ContractDevice(fleet, broker.port)
    r = config(broker, "set", "--device", "dev1", "interval_s=60")
    assert r.returncode == 2 and "(it is in config 2 of dev1: --unset wdt_s drops it)" in one_error(r), r.stderr
    r = config(broker, "set", "--device", "dev1", "interval_s=60", "--unset", "wdt_s")
    assert (r.returncode, r.stdout) == (0, "dev1 applied config 3: interval_s=60\n"), r.stderr
    assert [d["version"] for d in dev.docs] == [2, 3]  # the retained one at subscription, then ours only
    dev.stop()
