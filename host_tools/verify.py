"""Delivery verification: subscribe with the verifier identity, validate payloads, track sequences.

`Tracker` is pure (feed it topic, payload, receive time) so tests can drive it directly;
`run_verify` wires it to paho-mqtt with server verification always on.
"""
import json
import math
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .contract import (ERROR_FIELD, HEALTH_FIELDS, ID_FIELD, READING_FIELDS, ROOT, SEQ_FIELD, STATE_KEY, STATUS, STATUS_FIELD,
                       STATUS_LEAF, STATUS_OK, STATUS_SENSOR_ERROR, STATUSES, TELEMETRY, TELEMETRY_LEAF, TS_FIELD,
                       UPTIME_FIELD)
from .errors import CommandError

# exit statuses of `sensorpub verify` (1: other errors, 2: usage)
EXIT_CONNECT, EXIT_TIMEOUT, EXIT_GAPS, EXIT_MALFORMED = 3, 4, 5, 6
RESERVED = {*READING_FIELDS, ERROR_FIELD, *HEALTH_FIELDS}  # every other field is a sensor value


def validate(topic: str, payload: bytes) -> Tuple[Optional[dict], Optional[str]]:
    """Return (reading, None) for a valid telemetry payload, else (None, reason)."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != ROOT or parts[2] != TELEMETRY_LEAF:
        return None, f"unexpected topic {topic!r}"
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None, "not JSON"
    if not isinstance(msg, dict):
        return None, "not a JSON object"

    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if msg.get(ID_FIELD) != parts[1]:
        return None, f"{ID_FIELD} {msg.get(ID_FIELD)!r} does not match topic device {parts[1]!r}"
    seq = msg.get(SEQ_FIELD)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return None, f"{SEQ_FIELD} missing or not a non-negative integer"
    if TS_FIELD not in msg:
        return None, f"{TS_FIELD} missing"
    if msg[TS_FIELD] is None:
        if not num(msg.get(UPTIME_FIELD)):
            return None, f"{TS_FIELD} is null and {UPTIME_FIELD} is missing"
    elif not num(msg[TS_FIELD]):
        return None, f"{TS_FIELD} is neither epoch seconds nor null"
    status = msg.get(STATUS_FIELD)
    if status not in STATUSES:
        return None, f"{STATUS_FIELD} {status!r} is not one of {', '.join(STATUSES)}"
    bad = [k for k in HEALTH_FIELDS if k in msg and not num(msg[k])]
    if bad:
        return None, f"health field {bad[0]} is not a number"
    values = {k: v for k, v in msg.items() if k not in RESERVED}
    if any(not (num(v) or v is None) for v in values.values()):
        return None, "a sensor value is not a number"
    if status == STATUS_OK and not any(num(v) for v in values.values()):
        return None, f"{STATUS_FIELD} {STATUS_OK} but no sensor value"
    if status == STATUS_SENSOR_ERROR and not isinstance(msg.get(ERROR_FIELD), str):
        return None, f"{STATUS_FIELD} {STATUS_SENSOR_ERROR} without an {ERROR_FIELD} string"
    return msg, None


@dataclass
class DeviceStats:
    device: str
    valid: int = 0
    malformed: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    sensor_errors: int = 0
    first_seq: Optional[int] = None
    max_seq: Optional[int] = None
    seen: set = field(default_factory=set)
    latencies: List[float] = field(default_factory=list)
    status: str = "-"
    last_error: str = ""

    @property
    def gaps(self) -> int:
        """Sequence numbers never received between the first and the highest seen."""
        if self.max_seq is None:
            return 0
        return (self.max_seq - self.first_seq + 1) - len(self.seen)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "device": self.device, "valid": self.valid, "malformed": self.malformed, "gaps": self.gaps,
            "duplicates": self.duplicates, "out_of_order": self.out_of_order,
            "sensor_errors": self.sensor_errors, "first_seq": self.first_seq, "last_seq": self.max_seq,
            "latency_avg_s": round(sum(lat) / len(lat), 3) if lat else None,
            "latency_max_s": round(lat[-1], 3) if lat else None,
            "status": self.status, "last_error": self.last_error,
        }


class Tracker:
    def __init__(self):
        self.devices: Dict[str, DeviceStats] = {}

    def _dev(self, name: str) -> DeviceStats:
        return self.devices.setdefault(name, DeviceStats(name))

    def feed(self, topic: str, payload: bytes, received: Optional[float] = None) -> Tuple[str, Optional[dict], str]:
        """Account for one message; returns (kind, reading, note) with kind in valid/malformed/status/duplicate."""
        received = time.time() if received is None else received
        parts = topic.split("/")
        dev = self._dev(parts[1] if len(parts) > 1 else topic)
        if len(parts) == 3 and parts[2] == STATUS_LEAF:
            state, note = parse_status(payload)
            dev.status = state
            return "status", None, note
        msg, why = validate(topic, payload)
        if msg is None:
            dev.malformed += 1
            dev.last_error = why
            return "malformed", None, why
        seq = msg[SEQ_FIELD]
        if seq in dev.seen:
            dev.duplicates += 1
            return "duplicate", msg, f"seq {seq} seen before"
        note = ""
        if dev.max_seq is None:
            dev.first_seq = dev.max_seq = seq
        elif seq < dev.max_seq:
            dev.out_of_order += 1
            dev.first_seq = min(dev.first_seq, seq)
            note = f"seq {seq} after {dev.max_seq}"
        else:
            if seq > dev.max_seq + 1:
                note = f"gap: {seq - dev.max_seq - 1} missing before seq {seq}"
            dev.max_seq = seq
        dev.seen.add(seq)
        dev.valid += 1
        if msg[STATUS_FIELD] == STATUS_SENSOR_ERROR:
            dev.sensor_errors += 1
        if msg.get(TS_FIELD) is not None:
            dev.latencies.append(max(0.0, received - msg[TS_FIELD]))
        return "valid", msg, note

    # (header, summary key): short headers so a table fits 100 columns with a 24-character device name
    COLUMNS = (("device", "device"), ("valid", "valid"), ("bad", "malformed"), ("gaps", "gaps"),
               ("dup", "duplicates"), ("order", "out_of_order"), ("s_err", "sensor_errors"),
               ("first", "first_seq"), ("last", "last_seq"), ("lat_avg", "latency_avg_s"),
               ("lat_max", "latency_max_s"), ("status", "status"))

    def table(self) -> str:
        """The summary as a terminal table (the same figures as --json, shorter headers)."""
        rows = [[("-" if s[k] is None else clean(str(s[k]))) for _, k in self.COLUMNS] for s in self.summary()]
        heads = [h for h, _ in self.COLUMNS]
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
        widths[0] = min(widths[0], 24)  # a longer device name is cut with '~' rather than widen every line
        rows = [[r[0] if len(r[0]) <= 24 else r[0][:23] + "~"] + r[1:] for r in rows]
        fmt = " ".join("{:<%d}" % w for w in widths)
        lines = [fmt.format(*heads).rstrip()] + [fmt.format(*r).rstrip() for r in rows]
        if not rows:
            lines.append("(no messages)")
        return "\n".join(lines)

    def summary(self) -> List[dict]:
        return [self.devices[k].summary() for k in sorted(self.devices)]


def parse_status(payload: bytes) -> Tuple[str, str]:
    """(state, note) of a status message: {"state": "online", "reset": CAUSE} after a CONNECT,
    {"state": "offline", "reason": "lost" (the Last Will) | "stopped"}; plain text from older firmware."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return text, text
    if not isinstance(obj, dict):
        return str(obj), str(obj)
    state = str(obj.get(STATE_KEY, text))
    extra = ", ".join(f"{k}: {v}" for k, v in obj.items() if k != STATE_KEY)
    return state, f"{state} ({extra})" if extra else state


def clean(text: str) -> str:
    """Device-controlled text made safe for a terminal: control characters shown escaped, never sent."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def describe(kind: str, topic: str, msg: Optional[dict], note: str) -> str:
    return clean(_describe(kind, topic, msg, note))


def _describe(kind: str, topic: str, msg: Optional[dict], note: str) -> str:
    dev = topic.split("/")[1] if "/" in topic else topic
    if kind == "status":
        return f"{dev} status {note}"
    if kind == "malformed":
        return f"{dev} MALFORMED: {note}"
    vals = " ".join(f"{k}={v}" for k, v in msg.items() if k not in RESERVED)
    err = f" {ERROR_FIELD}={msg[ERROR_FIELD]!r}" if msg.get(ERROR_FIELD) else ""
    return f"{dev} {SEQ_FIELD}={msg[SEQ_FIELD]} {msg[STATUS_FIELD]} {vals}{err}" + \
        (f" [{kind}: {note}]" if note or kind != "valid" else "")


@dataclass
class Endpoint:
    """Where and how the verifier connects."""
    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_id: str
    alpn: Optional[str] = None
    clean_session: bool = True


def tls_context(ep: Endpoint) -> ssl.SSLContext:
    """The client's TLS: the server certificate verified against ep.ca_file (always), ep's certificate sent."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from .pki import load_cert
    for p in (ep.ca_file, ep.cert_file, ep.key_file):
        if not Path(p).exists():
            raise CommandError(f"{p} is missing: run 'sensorpub pki verifier' (and 'pki init') first")
    ca_pem = load_cert(Path(ep.ca_file)).public_bytes(Encoding.PEM).decode()  # PEM or DER file
    ctx = ssl.create_default_context(cadata=ca_pem)  # CERT_REQUIRED + hostname check, always
    ctx.load_cert_chain(str(ep.cert_file), str(ep.key_file))
    if ep.alpn:
        ctx.set_alpn_protocols([ep.alpn])
    return ctx


def connect(client, ep: Endpoint) -> None:
    """client.connect() with every way it fails as one line (exit status EXIT_CONNECT)."""
    try:
        client.connect(ep.host, ep.port, keepalive=30)
    except ssl.SSLCertVerificationError as e:
        raise CommandError(f"the server at {ep.host}:{ep.port} is not trusted by {ep.ca_file}: {e.verify_message}", EXIT_CONNECT) from None
    except ssl.SSLError as e:
        raise CommandError(f"TLS with {ep.host}:{ep.port} failed: {e.reason or e}", EXIT_CONNECT) from None
    except ConnectionRefusedError:
        raise CommandError(f"nothing listens on {ep.host}:{ep.port}: start it with 'sensorpub broker start'", EXIT_CONNECT) from None
    except OSError as e:
        raise CommandError(f"cannot reach {ep.host}:{ep.port}: {e.strerror or e}", EXIT_CONNECT) from None


def run_verify(ep: Endpoint, tracker: Tracker, *, device: Optional[str] = None, count: int = 0,
               timeout: float = 60.0, on_line: Callable[[str], None] = print,
               on_ready: Callable[[], None] = lambda: None) -> bool:
    """Subscribe and feed the tracker until `count` valid readings from `device` arrived or timeout.
    `on_ready` is called once the broker confirmed the subscription (what is published from then on is seen).

    Returns True when the target was reached (or no target was set)."""
    import paho.mqtt.client as mqtt

    ctx = tls_context(ep)  # first: a missing file is the first thing to say
    done = threading.Event()
    failure: List[str] = []

    def on_connect(client, _ud, _flags, reason, _props):
        if reason.is_failure:
            failure.append(f"broker {ep.host}:{ep.port} refused the verifier: {reason}")
            done.set()
            return
        client.subscribe([(TELEMETRY, 1), (STATUS, 1)])

    def on_message(_client, _ud, m):
        kind, msg, note = tracker.feed(m.topic, m.payload)
        on_line(describe(kind, m.topic, msg, note))
        if device and count and device in tracker.devices and tracker.devices[device].valid >= count:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ep.client_id,
                         clean_session=ep.clean_session, protocol=mqtt.MQTTv311)
    client.tls_set_context(ctx)
    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = lambda *_a: on_ready()
    connect(client, ep)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    if failure:
        raise CommandError(failure[0], EXIT_CONNECT)
    if device and count:
        got = tracker.devices[device].valid if device in tracker.devices else 0
        return got >= count
    return True


def verdict(tracker: Tracker, reached: bool, device: Optional[str], count: int, timeout: float) -> int:
    """0 only when every expected reading arrived valid with no gap; else raise with the documented code."""
    if not reached:
        got = tracker.devices[device].valid if device in tracker.devices else 0
        raise CommandError(f"only {got} of {count} valid readings from {device} within {timeout:g} s", EXIT_TIMEOUT)
    stats = [tracker.devices[device]] if device else list(tracker.devices.values())
    if not any(d.valid for d in stats):
        raise CommandError(f"no valid reading{' from ' + device if device else ''} arrived within {timeout:g} s",
                           EXIT_TIMEOUT)
    gaps = {clean(d.device): d.summary()["gaps"] for d in stats if d.summary()["gaps"]}
    if gaps:
        raise CommandError("readings missing (gaps in seq): " + ", ".join(f"{k} {v}" for k, v in gaps.items()),
                           EXIT_GAPS)
    bad = {clean(d.device): d.malformed for d in stats if d.malformed}
    if bad:
        raise CommandError("malformed payloads: " + ", ".join(f"{k} {v}" for k, v in bad.items()), EXIT_MALFORMED)
    return 0
