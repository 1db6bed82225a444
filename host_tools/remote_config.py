"""Remote config, host side: the rules of the retained config document (contract.py) and the operator's
conversation with one device about it.

A device's config topic holds {VERSION_KEY: N, SET_KEY: {key: value}} retained; SET_KEY is every override
(a key left out goes back to its flashed value). The device answers on its retained status: CONFIG_KEY is the
version it runs, REFUSED_KEY what it refused and why. Keys are checked here with the firmware's own rules
(firmware/config.py, loaded by flash.firmware_config_module) before anything is sent.

The pure part (parse_assignments, merge, check, next_version, describe) is what tests call directly;
`Conversation` is the only part that talks to a broker.
"""
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional

from .contract import (CONFIG_KEY, CONFIG_LEAF, KEY_KEY, ONLINE, REASON_KEY, REFUSED_KEY, SET_KEY, STATE_KEY,
                       STATUS_LEAF, VERSION_KEY, device_topic)
from .errors import CommandError
from .verify import EXIT_CONNECT, Endpoint, clean, connect, tls_context

# exit statuses of `sensorpub config` (1: other errors, 2: usage or a key refused here, 3: EXIT_CONNECT)
EXIT_LOCAL, EXIT_NO_ANSWER, EXIT_REFUSED = 2, 4, 5
RETAINED_GRACE_S = 1.0   # after SUBACK: how long to wait for a retained document that may not exist
ECHO_S = 10.0            # the broker forwards our own publish back to us; if not, its ACL dropped it
WHERE = "the remote config"  # how the firmware's messages name the document ("key 'x' in <WHERE> ...")


def parse_assignments(items: Iterable[str]) -> Dict[str, object]:
    """KEY=VALUE, the value a JSON scalar (60: int, true: bool, "x" or x: str)."""
    out: Dict[str, object] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k.strip() or k != k.strip():
            raise CommandError(f"{it!r}: write KEY=VALUE, e.g. interval_s=60", EXIT_LOCAL)
        try:
            val = json.loads(v)
        except ValueError:
            val = v  # a bare word is a string
        if isinstance(val, (dict, list)):
            raise CommandError(f"{k}={v}: a config value is a number, true/false or a string", EXIT_LOCAL)
        out[k] = val
    return out


def merge(current: Dict[str, object], sets: Dict[str, object], unsets: Iterable[str]) -> Dict[str, object]:
    """The new SET_KEY: the current overrides, `unsets` dropped, `sets` on top."""
    out = dict(current)
    for k in unsets:
        if k not in out:
            have = ", ".join(sorted(out)) or "none"
            raise CommandError(f"--unset {k}: the config has no override '{k}' (it has: {have})", EXIT_LOCAL)
        del out[k]
    out.update(sets)
    return out


def check(keys: Dict[str, object], device: str) -> None:
    """Refuse, naming the key, what the device would refuse: a key it does not know, one that never changes
    over the air or only with a re-flash, a wrong type or a value out of bounds (firmware/config.py's rules).
    Rules between keys are checked against the firmware defaults for keys not in `keys`: the device checks
    again against its own /config.json."""
    from .flash import firmware_config_module
    mod = firmware_config_module()
    for k in keys:
        if k not in mod.DEFAULTS:
            raise CommandError(f"unknown key '{k}': no such config key (see firmware/config.py)", EXIT_LOCAL)
        if k in mod.NEVER_REMOTE:
            raise CommandError(f"key '{k}' never changes over the air: re-flash with 'sensorpub flash'", EXIT_LOCAL)
        if k not in mod.REMOTE:
            raise CommandError(f"key '{k}' is not changeable at run time: re-flash with 'sensorpub flash' "
                               f"(remote keys: {', '.join(mod.REMOTE)})", EXIT_LOCAL)
    try:  # required keys get stand-ins: only the overrides are checked here
        mod.validate({"device_id": device, "broker_host": "localhost", **keys}, WHERE)
    except mod.ConfigError as e:
        raise CommandError(str(e), EXIT_LOCAL) from None


def parse_doc(payload: bytes) -> Optional[dict]:
    """A config document as {VERSION_KEY: int, SET_KEY: dict}; None for an empty (cleared) topic or one that
    is not a document (the next version replaces it)."""
    try:
        doc = json.loads(payload) if payload else None
    except ValueError:
        return None
    if not isinstance(doc, dict) or type(doc.get(VERSION_KEY)) is not int or not isinstance(doc.get(SET_KEY), dict):
        return None
    return doc


def parse_status(payload: bytes) -> Optional[dict]:
    try:
        doc = json.loads(payload) if payload else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def running(status: Optional[dict]) -> Optional[int]:
    """The config version the device reports it runs (None: no report, or firmware without remote config)."""
    v = (status or {}).get(CONFIG_KEY)
    return v if type(v) is int else None


def refused(status: Optional[dict]) -> Optional[dict]:
    r = (status or {}).get(REFUSED_KEY)
    return r if isinstance(r, dict) and type(r.get(VERSION_KEY)) is int else None


def next_version(doc: Optional[dict], status: Optional[dict]) -> int:
    """Above the retained document's version and anything the device reports running or having refused: the
    device ignores a version it has already seen."""
    seen = [0, (doc or {}).get(VERSION_KEY, 0), running(status) or 0, (refused(status) or {}).get(VERSION_KEY, 0)]
    return max(seen) + 1


def show(keys: Dict[str, object]) -> str:
    """interval_s=60 health_every=5 (values as JSON), or what an empty set means."""
    text = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(keys.items()))
    return clean(text) or "no overrides (its flashed config)"


def answer(status: Optional[dict], version: int) -> Optional[str]:
    """'applied' or 'refused' once the status answers `version`, else None."""
    if running(status) == version:
        return "applied"
    if (refused(status) or {}).get(VERSION_KEY) == version:
        return "refused"
    return None


def state_of(status: Optional[dict]) -> str:
    """online / offline (lost) / unknown, from a status document."""
    if not status:
        return "unknown"
    why = status.get(REASON_KEY)
    return clean(f"{status.get(STATE_KEY, '?')}" + (f" ({why})" if why else ""))


def refusal_text(r: dict) -> str:
    return clean(f"{r.get(KEY_KEY) or '?'}: {r.get(REASON_KEY) or 'no reason given'}")


@dataclass
class Conversation:
    """One verifier connection that watches one of a device's operator topics (`leaf`: its config, or its
    certificate for renewal.py) and its status topic, and can write that topic.

    Use as a context manager: entering connects, subscribes and collects the retained documents."""
    ep: Endpoint
    device: str
    leaf: str = CONFIG_LEAF
    parse: Callable[[bytes], object] = parse_doc
    doc: Optional[Any] = None           # the newest document seen on `leaf`, parsed
    raw: Optional[bytes] = None         # ... as it came
    status: Optional[dict] = None       # the newest status document seen
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _failure: List[str] = field(default_factory=list)
    _seen: set = field(default_factory=set)
    _statuses: List[dict] = field(default_factory=list)

    def __enter__(self):
        import paho.mqtt.client as mqtt
        ctx = tls_context(self.ep)
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.ep.client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        self.c.tls_set_context(ctx)
        self.c.on_connect, self.c.on_subscribe = self._on_connect, self._on_subscribe
        self.c.on_disconnect, self.c.on_message = self._on_disconnect, self._on_message
        connect(self.c, self.ep)
        self.c.loop_start()
        try:
            self._wait(lambda: "subscribed" in self._seen, 15, "did not confirm the subscription within 15 s")
            with self._cond:  # retained documents follow the SUBACK; there may be none
                self._cond.wait_for(lambda: {"doc", "status"} <= self._seen or self._failure, RETAINED_GRACE_S)
            self._raise()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc):
        self.c.disconnect()
        self.c.loop_stop()

    def publish(self, payload: bytes, what: str) -> None:
        """Write `payload` retained at QoS 1 and see it come back: a broker that drops it (ACL, policy) says so.
        `what` names it in that message (e.g. 'config 3')."""
        topic = device_topic(self.device, self.leaf)
        with self._cond:
            self._seen.discard("echo")
        self.c.publish(topic, payload, qos=1, retain=True)
        self._wait(lambda: "echo" in self._seen and self.raw == payload, ECHO_S,
                   f"did not pass on {what} within {ECHO_S:g} s: its ACL or policy must let the verifier identity "
                   f"write {topic} (a broker started by an older sensorpub: 'sensorpub broker stop', then "
                   "'broker start')")

    def wait_for(self, pred: Callable[[Optional[dict]], bool], timeout: float) -> Optional[dict]:
        """The first status document seen (retained one included) for which `pred` holds; None at the timeout."""
        def hit():
            return next((st for st in self._statuses if pred(st)), None)
        with self._cond:
            self._cond.wait_for(lambda: hit() is not None or bool(self._failure), timeout)
            found = hit()
        self._raise()
        return found

    def _wait(self, pred, timeout, what):
        with self._cond:
            if not self._cond.wait_for(lambda: pred() or self._failure, timeout):
                self._failure.append(f"broker {self.ep.host}:{self.ep.port} {what}")
        self._raise()

    def _raise(self):
        if self._failure:
            raise CommandError(self._failure[0], EXIT_CONNECT)

    def _on_connect(self, client, _ud, _flags, reason, _props):
        if reason.is_failure:
            self._fail(f"broker {self.ep.host}:{self.ep.port} refused the verifier: {reason}")
            return
        client.subscribe([(device_topic(self.device, self.leaf), 1), (device_topic(self.device, STATUS_LEAF), 1)])

    def _on_subscribe(self, _client, _ud, _mid, codes, _props):
        if any(c.is_failure for c in codes):
            self._fail(f"broker {self.ep.host}:{self.ep.port} refused the subscription: check that "
                       f"{self.ep.cert_file} is a verifier identity of this fleet")
        with self._cond:
            self._seen.add("subscribed")
            self._cond.notify_all()

    def _on_disconnect(self, _client, _ud, _flags, reason, _props):
        self._fail(f"broker {self.ep.host}:{self.ep.port} closed the connection ({reason}): its policy may "
                   f"not let this identity read or write {device_topic(self.device, self.leaf)}")

    def _fail(self, why):
        with self._cond:
            if not self._failure:
                self._failure.append(why)
            self._cond.notify_all()

    def _on_message(self, _client, _ud, m):
        with self._cond:
            if m.topic.endswith("/" + self.leaf):
                self.raw, self.doc = m.payload, self.parse(m.payload)
                self._seen.add("doc" if m.retain else "echo")
            else:
                self.status = parse_status(m.payload)
                self._statuses += [self.status] if self.status else []
                self._seen.add("status")
            self._cond.notify_all()


@dataclass
class Outcome:
    """What `send` did and what the device said."""
    device: str
    version: int                 # the version the device was asked to run
    previous: int                # the retained document's version before (0: none)
    keys: Dict[str, object]      # its SET_KEY
    published: bool              # False when the retained document already said the same
    result: str                  # applied | refused | no answer
    status: Optional[dict]       # the device's newest status document

    def as_json(self) -> dict:
        return {"device": self.device, "version": self.version, "previous": self.previous, SET_KEY: self.keys,
                "published": self.published, "result": self.result, "running": running(self.status),
                REFUSED_KEY: refused(self.status) if self.result == "refused" else None,
                "state": state_of(self.status), "status": self.status}


def read(ep: Endpoint, device: str):
    """(config document, status document) retained for `device`; either may be None."""
    with Conversation(ep, device) as c:
        return c.doc, c.status


def send(ep: Endpoint, device: str, sets: Dict[str, object], unsets: Iterable[str], timeout: float,
         progress: Callable[[str], None] = lambda _m: None) -> Outcome:
    """Merge `sets`/`unsets` into the device's retained config, check it, publish it as the next version
    (unless it says nothing new) and wait up to `timeout` s for the device's answer on its status."""
    check(sets, device)  # before connecting: a key refused here is refused with nothing sent
    with Conversation(ep, device) as c:
        old = c.doc or {VERSION_KEY: 0, SET_KEY: {}}
        keys = merge(old[SET_KEY], sets, unsets)
        try:
            check(keys, device)
        except CommandError as e:  # a key the retained document already held: say how to drop it
            stale = [k for k in old[SET_KEY] if k not in sets and f"'{k}'" in str(e)]
            if not stale:
                raise
            raise CommandError(f"{e} (it is in config {old[VERSION_KEY]} of {device}: --unset {stale[0]} drops it)",
                               EXIT_LOCAL) from None
        fresh = keys != old[SET_KEY] or not old[VERSION_KEY] or next_version(None, c.status) > old[VERSION_KEY] + 1
        version = next_version(c.doc, c.status) if fresh else old[VERSION_KEY]
        if fresh:
            runs = running(c.status)
            progress(f"config: retained config of {device}: {old[VERSION_KEY] or 'none'}, it reports running "
                     f"{'?' if runs is None else runs}; sending config {version}: {show(keys)}")
            c.publish(json.dumps({VERSION_KEY: version, SET_KEY: keys}, separators=(",", ":")).encode(),
                      f"config {version}")
        else:
            progress(f"config: config {version} of {device} already says {show(keys)}: nothing to send")
        progress(f"config: waiting up to {timeout:g} s for {device} to answer")
        st = c.wait_for(lambda s: answer(s, version) is not None, timeout)
        return Outcome(device, version, old[VERSION_KEY], keys, fresh, answer(st, version) or "no answer",
                       st or c.status)
