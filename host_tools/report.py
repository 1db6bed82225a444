"""`sensorpub report`: one self-contained HTML file from the bridge's store: a fleet summary (the figures of
`sensorpub status`), then per device its sensor values over time, the latency distribution, the gaps in seq,
and health trends.

The file opens with no network: the style sheet is inline and every chart is a PNG drawn by matplotlib (Agg,
no pyplot state) embedded as base64. Everything a device controls is cleaned and HTML-escaped; chart labels
are drawn with mathtext off, so a field named '$x$' is just text.
"""
import base64
import datetime as dt
import html
import io
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .contract import (BOARD_KEY, BOOTS_KEY, CERT_DAYS_FIELD, FW_KEY, HEALTH_FIELDS, MP_KEY, OFFLINE, REASON_KEY,
                       RESET_KEY, STATUS_SENSOR_ERROR)
from .errors import CommandError
from .fleet_status import ASLEEP, CERT_SOON_DAYS, COLUMNS, age, cells, known_devices, missing_ranges, summarize
from .verify import RESERVED, clean

DUPLICATES = "0 (de-duplicated by the bridge)"  # the store keeps one row per (device, seq); redeliveries are not counted
MAX_SENSORS = 12        # sensor values drawn per device; more are named, not drawn
MAX_RANGES = 20         # missing-seq ranges listed per device
DPI = 100
RED, BLUE, GREY = "#d62728", "#1f77b4", "#7f7f7f"
HEALTH_UNITS = {"heap_free": "bytes", "rssi": "dBm", "reconnects": "since boot", "queued": "readings",
                "cert_days": "days left"}
UTC = dt.timezone.utc


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, UTC)


def _plausible(ts) -> bool:
    """A device clock worth plotting against (years 2000-2100); anything else is drawn at its receive time."""
    return ts is not None and 946684800 <= ts <= 4102444800


def _e(value) -> str:
    """Device-controlled text for HTML: control characters escaped as for the terminal, then HTML-escaped."""
    return html.escape(clean(str(value)), quote=True)


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str, cls: str = "") -> str:
    return f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _time_axis(ax) -> None:
    import matplotlib.dates as mdates
    loc = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=UTC))


def _style(ax) -> None:
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


class _Device:
    """One device's stored readings, parsed once."""

    def __init__(self, name: str, rows: List[dict]):
        self.name = name
        self.rows = sorted(rows, key=lambda r: r["seq"])
        self.payloads = []
        for r in self.rows:
            try:
                p = json.loads(r["payload"])
            except (TypeError, ValueError):
                p = {}
            self.payloads.append(p if isinstance(p, dict) else {})
        self.x = [_utc(r["ts"] if _plausible(r["ts"]) else r["received_at"]) for r in self.rows]
        self.by_seq = {r["seq"]: i for i, r in enumerate(self.rows)}
        self.gaps = missing_ranges(self.by_seq)
        sensors: Dict[str, None] = {}
        for p in self.payloads:
            for k, v in p.items():
                if k not in RESERVED and _number(v):
                    sensors.setdefault(k, None)
        self.sensors = list(sensors)
        self.health = [f for f in HEALTH_FIELDS if any(_number(p.get(f)) for p in self.payloads)]
        self.latency = [r["received_at"] - r["ts"] for r in self.rows if r["ts"] is not None]

    def series(self, field: str):
        return [p[field] if _number(p.get(field)) else float("nan") for p in self.payloads]

    def gap_spans(self):
        """(x before, x after) of each missing range: the readings either side of it."""
        return [(self.x[self.by_seq[a - 1]], self.x[self.by_seq[b + 1]]) for a, b in self.gaps]


def _sensor_figure(d: _Device):
    from matplotlib.figure import Figure
    fields = d.sensors[:MAX_SENSORS]
    fig = Figure(figsize=(10.5, 0.9 + 1.7 * len(fields)), layout="constrained")
    axes = fig.subplots(len(fields), 1, sharex=True, squeeze=False)[:, 0]
    marker = "." if len(d.rows) <= 200 else None
    errors = [x for x, r in zip(d.x, d.rows) if r["status"] == STATUS_SENSOR_ERROR]
    for i, (ax, f) in enumerate(zip(axes, fields)):
        ax.plot(d.x, d.series(f), color=f"C{i % 10}", linewidth=1.4, marker=marker, markersize=4)
        ax.set_ylabel(clean(f), parse_math=False)
        for j, (x0, x1) in enumerate(d.gap_spans()):
            ax.axvspan(x0, x1, color=RED, alpha=0.18, linewidth=0, label="missing seq" if j == 0 else None)
        for j, x in enumerate(errors):
            ax.axvline(x, color=RED, linewidth=0.8, linestyle=":", label="sensor error" if j == 0 else None)
        _style(ax)
        _time_axis(ax)
    if d.gaps or errors:  # above the plots, never over the data
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper right", fontsize=8, frameon=False,
                   ncols=2)
    axes[-1].set_xlabel("time (UTC): the device's ts, or when received if it had no clock yet")
    return fig


def _latency_figure(d: _Device):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.2, 3.1), layout="constrained")
    ax = fig.subplots()
    ax.hist(d.latency, bins=max(5, min(40, len(d.latency) // 3)), color=BLUE, edgecolor="white", linewidth=0.5)
    med = statistics.median(d.latency)
    ax.axvline(med, color=RED, linestyle="--", linewidth=1.2, label=f"median {med:.2f} s")
    ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel("latency, s (received - ts)")
    ax.set_ylabel("readings")
    ax.set_title("latency", fontsize=10, loc="left")
    _style(ax)
    return fig


def _health_figure(d: _Device):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.2, 0.7 + 1.25 * len(d.health)), layout="constrained")
    axes = fig.subplots(len(d.health), 1, sharex=True, squeeze=False)[:, 0]
    for ax, f in zip(axes, d.health):
        pts = [(x, p[f]) for x, p in zip(d.x, d.payloads) if _number(p.get(f))]
        ax.plot([x for x, _ in pts], [v for _, v in pts], color="#2ca02c", linewidth=1.2, marker=".", markersize=5)
        if f == CERT_DAYS_FIELD:
            ax.axhline(CERT_SOON_DAYS, color=RED, linestyle=":", linewidth=1)
        ax.set_ylabel(f"{f}\n({HEALTH_UNITS.get(f, '')})", fontsize=8, parse_math=False)
        _style(ax)
        _time_axis(ax)
    axes[0].set_title("health", fontsize=10, loc="left")
    return fig


def _ranges(gaps) -> str:
    if not gaps:
        return "none"
    missing = sum(b - a + 1 for a, b in gaps)
    shown = ", ".join(f"{a}" if a == b else f"{a}&ndash;{b}" for a, b in gaps[:MAX_RANGES])
    more = f" and {len(gaps) - MAX_RANGES} more ranges" if len(gaps) > MAX_RANGES else ""
    return f'<span class="bad">{missing} missing</span>: seq {shown}{more}'


def _when(row: dict) -> str:
    if row["never_seen"]:
        return "never"
    if row["last_seen"] is None:
        return "unknown (only a retained status)"
    return f"{age(row['last_seen_s'])} ago ({_utc(row['last_seen']):%Y-%m-%d %H:%M:%S} UTC)"


def _section(i: int, d: _Device, row: dict) -> str:
    state = row["state"] or "unknown"
    extra = row[REASON_KEY] if state == OFFLINE else row[RESET_KEY]
    badge = "offline" if state == OFFLINE else "online" if state in ("online", ASLEEP) else "unknown"
    lat = sorted(d.latency)
    facts = [
        ("state", _e(state) + (f" ({'reason' if state == OFFLINE else 'reset'}: {_e(extra)})" if extra else "")),
        ("last seen", _when(row)),
        ("readings", f"{len(d.rows)}" + (f", seq {row['first_seq']}&ndash;{row['last_seq']}" if d.rows else "")),
        ("gaps", _ranges(d.gaps)),
        ("duplicates", DUPLICATES),
        ("sensor errors", str(row["sensor_errors"])),
        ("latency", f"median {statistics.median(lat):.2f} s, p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} s, "
                    f"max {lat[-1]:.2f} s" if lat else "- (no reading carries ts)"),
        ("firmware", " &middot; ".join(f"{k} {'-' if row[k] is None else _e(row[k])}"
                                       for k in (FW_KEY, BOARD_KEY, MP_KEY, BOOTS_KEY))),
    ]
    cert = row[CERT_DAYS_FIELD]
    if any(row[f] is not None for f in HEALTH_FIELDS):
        facts.append(("health (newest)", " &middot; ".join(
            f"{f} {_e(row[f])}" + (" <span class=\"bad\">(expiring)</span>" if f == CERT_DAYS_FIELD and cert is not None
                                   and row["cert_expiring"] else "")
            for f in HEALTH_FIELDS if row[f] is not None)))
    out = [f'<section id="d{i}"><h2>{_e(d.name)} <span class="badge {badge}">{_e(state)}</span></h2>',
           '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    if d.sensors:
        out.append(_img(_sensor_figure(d), f"{d.name}: sensor values over time", "wide"))
        if len(d.sensors) > MAX_SENSORS:
            out.append(f'<p class="note">not drawn: {_e(", ".join(d.sensors[MAX_SENSORS:]))}</p>')
    elif d.rows:
        out.append('<p class="note">no sensor value in any reading (sensor errors only)</p>')
    else:
        out.append('<p class="note">no readings stored: only a status document</p>')
    small = []
    if d.latency:
        small.append(_img(_latency_figure(d), f"{d.name}: latency histogram"))
    if d.health:
        small.append(_img(_health_figure(d), f"{d.name}: health over time"))
    if small:
        out.append('<div class="pair">' + "".join(small) + "</div>")
    out.append("</section>")
    return "\n".join(out)


def _summary(rows: List[dict], anchors: Dict[str, int]) -> str:
    heads = "".join(f"<th>{h}</th>" for h, _ in COLUMNS)
    body = []
    for r in rows:
        cs = [_e(c) for c in cells(r)]
        if r["device"] in anchors:
            cs[0] = f'<a href="#d{anchors[r["device"]]}">{cs[0]}</a>'
        cls = ["" for _ in cs]
        if r["state"] == OFFLINE:
            cls[1] = "bad"
        if r["never_seen"]:
            cls[2] = "muted"
        if r["gaps"]:
            cls[4] = "bad"
        if r["cert_expiring"]:
            cls[6] = "bad"
        body.append("<tr>" + "".join(f'<td class="{k}">{c}</td>' if k else f"<td>{c}</td>" for c, k in zip(cs, cls))
                    + "</tr>")
    return f'<table class="summary"><thead><tr>{heads}</tr></thead><tbody>{"".join(body)}</tbody></table>'


CSS = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1b1b;
 background:#f4f6f8}
header{background:#1f4e79;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:4px 0 0;opacity:.85}
main{max-width:1120px;margin:0 auto;padding:18px 28px 40px}
section,.card{background:#fff;border:1px solid #dde3e8;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{margin:0 0 8px;font-size:18px}
.badge{font-size:12px;font-weight:600;border-radius:10px;padding:2px 9px;vertical-align:middle;color:#fff;
 background:#7f7f7f}
.badge.online{background:#2e7d32}.badge.offline{background:#c62828}
table.summary{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
table.summary th{text-align:left;font-weight:600;border-bottom:2px solid #c9d2da;padding:5px 8px}
table.summary td{border-bottom:1px solid #e6ebef;padding:4px 8px;font-family:ui-monospace,"DejaVu Sans Mono",monospace;
 font-size:13px}
table.summary tr:nth-child(even) td{background:#f8fafb}
.bad{color:#c62828;font-weight:600}.muted{color:#8a8a8a}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0 0 10px}
dl.facts dt{color:#5a6570}dl.facts dd{margin:0}
img{max-width:100%;height:auto;display:block}
img.wide{width:100%}
.pair{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.pair img{flex:0 1 calc(50% - 6px);min-width:320px}
.note,.legend{color:#5a6570;font-size:13px}
"""


def build(store, fleet: str, devices: Optional[Sequence[str]] = None, now: Optional[float] = None,
          done: Callable[[str], None] = lambda _d: None) -> str:
    """The whole report as one HTML string; `done(device)` after each device's section (for a progress bar)."""
    now = time.time() if now is None else now
    readings = store.readings()
    if not readings:
        raise CommandError(f"the store {store.where} holds no readings: run 'sensorpub bridge --fleet {fleet}' "
                           "to collect some")
    by_dev: Dict[str, List[dict]] = {}
    for r in readings:
        by_dev.setdefault(r["device_id"], []).append(r)
    statuses = store.statuses()
    known = set(known_devices(fleet))
    names = sorted(set(by_dev) | set(statuses) | known)
    rows = {d: summarize(d, by_dev.get(d, []), statuses.get(d), now, d in known) for d in names}
    if devices:
        absent = [d for d in devices if d not in by_dev and d not in statuses]
        if absent:
            raise CommandError(f"no readings or status of {', '.join(map(repr, absent))} in the store {store.where}: "
                               f"it has {', '.join(clean(n) for n in sorted(set(by_dev) | set(statuses)))}")
        chosen = list(dict.fromkeys(devices))
    else:
        chosen = sorted(set(by_dev) | set(statuses))
    anchors = {d: i for i, d in enumerate(chosen)}
    sections = []
    for d in chosen:
        sections.append(_section(anchors[d], _Device(d, by_dev.get(d, [])), rows[d]))
        done(d)
    flagged = sum(bool(set(r["flags"]) & {"offline", "cert_expiring"}) for r in rows.values())
    head = (f"fleet {_e(fleet)} &middot; {len(readings)} readings from {len(by_dev)} devices &middot; store "
            f"{_e(store.where)} &middot; generated {_utc(now):%Y-%m-%d %H:%M:%S} UTC")
    legend = ("seen: since the last reading or status change; seq: last seq; gaps: seqs missing between the first "
              "and last stored; lat_s: median of received &minus; ts, seconds; cert_d: days left on the client "
              f"certificate (! at {CERT_SOON_DAYS} or fewer); fw, rssi, reconn: newest values")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sensorpub report: {_e(fleet)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>sensorpub report: {_e(fleet)}</h1><p>{head}</p></header><main>",
        f'<div class="card"><h2>Fleet ({len(rows)} devices, {flagged} flagged)</h2>',
        _summary(list(rows.values()), anchors), f'<p class="legend">{legend}</p></div>',
        *sections, "</main></body></html>", ""])


def check_target(path: Path) -> Path:
    """Refuse an output path that cannot be written before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"--html {path} is a directory: name a file, e.g. {path / 'report.html'}")
    if not path.parent.is_dir():
        raise CommandError(f"--html {path}: directory {path.parent} does not exist: create it first")
    return path


def write(path: Path, text: str) -> int:
    """Write the report whole (a temporary file renamed into place); returns its size in bytes."""
    path = check_target(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = text.encode("utf-8")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"--html {path}: cannot write it: {e.strerror}") from None
    return len(data)


def size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1048576:.1f} MB"
