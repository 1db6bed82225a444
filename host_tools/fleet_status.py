"""`sensorpub status`: the fleet at a glance, one row per device, from the bridge's store or, when there is
none, from a short subscription to the retained status topics (and the telemetry of that window).

`summarize` is pure (a device's readings and last status document in, one row out), so tests and
`sensorpub report` use it directly; `listen` is the only part that talks to a broker.
"""
import json
import statistics
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from .contract import (BOARD_KEY, BOOTS_KEY, CERT_DAYS_FIELD, CERT_KEY, CERT_REFUSED_KEY, FW_KEY, HEALTH_FIELDS, MP_KEY, OFFLINE, REASON_KEY,
                       RESET_KEY, SEQ_FIELD, SLEEPING, STATUS, STATUS_LEAF, STATUS_SENSOR_ERROR, TELEMETRY,
                       TS_FIELD)
from .errors import CommandError
from .verify import EXIT_CONNECT, Endpoint, clean, connect, parse_status, tls_context, validate

ASLEEP = "asleep"         # the state shown for a battery-mode device between readings (offline, reason SLEEPING)
CERT_SOON_DAYS = 30      # a certificate with this many days left or fewer is flagged
DEFAULT_WAIT_S = 3.0     # no store: how long to listen for retained statuses and telemetry
NAME_WIDTH = 24          # as verify's table: a longer device name is cut with '~'
WIDTH = 100              # the terminal output fits this many columns
DOC_KEYS = (RESET_KEY, REASON_KEY, FW_KEY, BOARD_KEY, MP_KEY, BOOTS_KEY, CERT_KEY, CERT_REFUSED_KEY)
SERIAL_TAIL = 4          # the table shows the last hex digits of the certificate serial in use ('pki list' all)

Message = Tuple[str, bytes, float, bool]  # topic, payload, host receive time (epoch s), retained


def known_devices(fleet: str) -> List[str]:
    """Devices with an identity in certs/<fleet>/devices (listed even when never heard from)."""
    from .fleet import Fleet
    d = Fleet(fleet).devices_dir
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".") and (p / "client.pem").exists())


def sqlite_file(url: Optional[str], fleet: str) -> Optional[Path]:
    """The SQLite file a --store value names (None: the fleet's default), or None for a server URL."""
    from .store import store_path
    if url is None:
        return store_path(fleet)
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///"):]).expanduser()
    if url and "://" not in url and not url.startswith("sqlite:"):
        return Path(url).expanduser()
    return None


def existing_store(url: Optional[str], fleet: str):
    """The store to read, or None when the fleet has no default store yet (a --store file must exist: reading
    never creates one)."""
    from .store import open_store
    path = sqlite_file(url, fleet)
    if path is not None and not path.is_file():
        if url is None:
            return None
        raise CommandError(f"--store {path} does not exist: run 'sensorpub bridge --store {url}' to fill it, "
                           "or leave --store out")
    return open_store(url, fleet)


def age(seconds: Optional[float]) -> str:
    """12s, 3m, 2h, 5d: how long ago, in the largest whole unit."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def missing_ranges(seqs: Iterable[int]) -> List[Tuple[int, int]]:
    """Inclusive (first, last) ranges of sequence numbers absent between the lowest and highest given."""
    out, prev = [], None
    for s in sorted(set(seqs)):
        if prev is not None and s > prev + 1:
            out.append((prev + 1, s - 1))
        prev = s
    return out


def _doc(text: Optional[str]) -> Tuple[Optional[str], dict]:
    """(state, fields) of a status document; older firmware sends fewer keys (or plain text)."""
    if text is None:
        return None, {}
    state, _note = parse_status(text.encode())
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    return state, (obj if isinstance(obj, dict) else {})


def _payload(r: dict) -> dict:
    p = r.get("payload")
    if isinstance(p, dict):
        return p
    if not isinstance(p, str):
        return {}
    try:
        obj = json.loads(p)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def summarize(device: str, readings: List[dict], status: Optional[dict] = None, now: Optional[float] = None,
              known: bool = False) -> dict:
    """One device's row. `readings`: dicts with seq, ts, received_at, status, payload (JSON text or dict), any
    order; `status`: {"doc": the last status document, "updated_at": host epoch s, or None when unknown (a
    retained message says nothing about when it was sent)}."""
    now = time.time() if now is None else now
    readings = sorted(readings, key=lambda r: r["seq"])
    state, doc = _doc(status["doc"] if status else None)
    if state == OFFLINE and doc.get(REASON_KEY) == SLEEPING:
        state = ASLEEP  # battery mode between readings: not a device in trouble
    if status and status.get("online_doc"):  # offline: the firmware and board it ran when last online
        doc = {**_doc(status["online_doc"])[1], **doc}
    seen = [r["received_at"] for r in readings]
    if status and status.get("updated_at") is not None:
        seen.append(status["updated_at"])
    last_seen = max(seen) if seen else None
    lat = [r["received_at"] - r["ts"] for r in readings if r.get("ts") is not None]
    payloads = [_payload(r) for r in readings]
    health = {}
    for f in HEALTH_FIELDS:  # each from the newest reading that carries it
        health[f] = next((p[f] for p in reversed(payloads) if isinstance(p.get(f), (int, float))), None)
    seqs = [r["seq"] for r in readings]
    gaps = (seqs[-1] - seqs[0] + 1 - len(set(seqs))) if seqs else 0
    cert = health[CERT_DAYS_FIELD]
    heard = bool(readings or status)
    row = {
        "device": device, "known": known, "state": state, **{k: doc.get(k) for k in DOC_KEYS},
        "last_seen": last_seen, "last_seen_s": None if last_seen is None else round(now - last_seen, 1),
        "never_seen": not heard,
        "readings": len(readings), "first_seq": seqs[0] if seqs else None, "last_seq": seqs[-1] if seqs else None,
        "gaps": gaps, "sensor_errors": sum(r.get("status") == STATUS_SENSOR_ERROR for r in readings),
        "latency_median_s": round(statistics.median(lat), 3) if lat else None,
        **health,
        "cert_expiring": cert is not None and cert <= CERT_SOON_DAYS,
    }
    row["flags"] = [f for f, on in (("never", not heard), ("offline", state == OFFLINE),
                                    ("cert_expiring", row["cert_expiring"]), ("gaps", gaps > 0)) if on]
    return row


def from_store(store, known: Iterable[str] = (), now: Optional[float] = None) -> List[dict]:
    """Every device in the store, plus the known ones it never heard from."""
    by_dev: Dict[str, List[dict]] = {}
    for r in store.readings():
        by_dev.setdefault(r["device_id"], []).append(r)
    statuses = store.statuses()
    known = set(known)
    names = sorted(set(by_dev) | set(statuses) | known)
    return [summarize(d, by_dev.get(d, []), statuses.get(d), now, d in known) for d in names]


def from_messages(messages: Iterable[Message], known: Iterable[str] = (), now: Optional[float] = None) -> List[dict]:
    """Rows from what a subscription heard: statuses (a retained one has no time) and valid readings."""
    readings: Dict[str, Dict[int, dict]] = {}
    statuses: Dict[str, dict] = {}
    for topic, payload, received, retained in messages:
        parts = topic.split("/")
        if len(parts) != 3:
            continue
        if parts[2] == STATUS_LEAF:
            if payload:  # an empty retained message clears the topic
                statuses[parts[1]] = {"doc": payload.decode("utf-8", "replace"),
                                      "updated_at": None if retained else received}
            continue
        msg, _why = validate(topic, payload)
        if msg is not None:
            readings.setdefault(parts[1], {}).setdefault(msg[SEQ_FIELD], {
                "seq": msg[SEQ_FIELD], "ts": msg[TS_FIELD], "received_at": received, "status": msg["status"],
                "payload": msg})
    known = set(known)
    names = sorted(set(readings) | set(statuses) | known)
    return [summarize(d, list(readings.get(d, {}).values()), statuses.get(d), now, d in known) for d in names]


def listen(ep: Endpoint, wait: float, on_ready: Callable[[], None] = lambda: None) -> List[Message]:
    """Subscribe to every device's status and telemetry for `wait` seconds after the broker confirmed the
    subscription (retained statuses come at once); server verification always on."""
    import paho.mqtt.client as mqtt

    ctx = tls_context(ep)
    got: List[Message] = []
    ready = threading.Event()
    failure: List[str] = []

    def on_connect(client, _ud, _flags, reason, _props):
        if reason.is_failure:
            failure.append(f"broker {ep.host}:{ep.port} refused the verifier: {reason}")
            ready.set()
            return
        client.subscribe([(STATUS, 1), (TELEMETRY, 1)])

    def on_subscribe(_client, _ud, _mid, codes, _props):
        if any(c.is_failure for c in codes):
            failure.append(f"broker {ep.host}:{ep.port} refused the subscription of {ep.client_id}: check that "
                           "it is a verifier identity of this fleet")
        ready.set()

    def on_disconnect(_client, _ud, _flags, reason, _props):
        if not ready.is_set():
            failure.append(f"broker {ep.host}:{ep.port} closed the connection before subscribing ({reason})")
            ready.set()

    def on_message(_client, _ud, m):
        got.append((m.topic, m.payload, time.time(), bool(m.retain)))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ep.client_id, clean_session=True,
                         protocol=mqtt.MQTTv311)
    client.tls_set_context(ctx)
    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_disconnect, client.on_message = on_disconnect, on_message
    connect(client, ep)
    client.loop_start()
    try:
        if not ready.wait(15):
            failure.append(f"broker {ep.host}:{ep.port} did not confirm the subscription within 15 s")
        if not failure:
            on_ready()
            threading.Event().wait(wait)  # the listening window itself
    finally:
        client.disconnect()
        client.loop_stop()
    if failure:
        raise CommandError(failure[0], EXIT_CONNECT)
    return list(got)


# (header, width limit) of the terminal table: 24 + 9 spaces + the rest stays within 100 columns
COLUMNS = (("device", NAME_WIDTH), ("state", 7), ("seen", 5), ("seq", 9), ("gaps", 7), ("lat_s", 6),
           ("cert_d", 6), ("cert", SERIAL_TAIL + 1), ("fw", 9), ("rssi", 4), ("reconn", 6))


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
    return str(int(v)) if isinstance(v, float) else str(v)


def _secs(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def cells(row: dict) -> List[str]:
    """A row as the table shows it, one string per COLUMNS entry, device text cleaned; not yet cut."""
    cert = row[CERT_DAYS_FIELD]
    return [
        clean(row["device"]),
        clean(str(row["state"])) if row["state"] is not None else "-",
        "never" if row["never_seen"] else age(row["last_seen_s"]),
        _num(row["last_seq"]), _num(row["gaps"]) if row["readings"] else "-", _secs(row["latency_median_s"]),
        "-" if cert is None else _num(cert) + ("!" if row["cert_expiring"] else ""),
        _serial(row[CERT_KEY]),
        "-" if row[FW_KEY] is None else clean(str(row[FW_KEY])),
        _num(row["rssi"]), _num(row["reconnects"]),
    ]


def _serial(v) -> str:
    if not isinstance(v, str) or not v:
        return "-"
    v = clean(v)
    return v if len(v) <= SERIAL_TAIL else "~" + v[-SERIAL_TAIL:]


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "~"


def table(rows: List[dict]) -> str:
    """The rows as a terminal table within 100 columns (device text cut with '~' when too long)."""
    heads = [h for h, _ in COLUMNS]
    body = [[cut(c, w) for c, (_, w) in zip(cells(r), COLUMNS)] for r in rows]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(heads)]
    fmt = " ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*heads).rstrip()] + [fmt.format(*b).rstrip() for b in body]
    if not rows:
        lines.append("(no devices)")
    return "\n".join(lines)


def notes(rows: List[dict]) -> List[str]:
    """One line per kind of trouble, naming the devices (cleaned), wrapped at WIDTH columns."""
    out = []
    off = [f"{clean(r['device'])} ({clean(str(r[REASON_KEY]))})" if r[REASON_KEY] is not None else clean(r["device"])
           for r in rows if "offline" in r["flags"]]
    if off:
        out.append("offline: " + ", ".join(off))
    soon = [f"{clean(r['device'])} ({_num(r[CERT_DAYS_FIELD])} d)" for r in rows if r["cert_expiring"]]
    if soon:
        out.append(f"certificate expires within {CERT_SOON_DAYS} days: " + ", ".join(soon)
                   + "; renew: sensorpub pki renew NAME --push")
    refused = [f"{clean(r['device'])} (serial {clean(str(c.get('serial')))}: {clean(str(c.get('reason')))})"
               for r in rows for c in [r[CERT_REFUSED_KEY]] if isinstance(c, dict)]
    if refused:
        out.append("refused a pushed certificate: " + "; ".join(refused))
    never = [clean(r["device"]) for r in rows if r["never_seen"]]
    if never:
        out.append("never heard from: " + ", ".join(never))
    return [w for line in out for w in textwrap.wrap(line, WIDTH, subsequent_indent="  ", break_on_hyphens=False)]
