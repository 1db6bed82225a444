"""report: one self-contained HTML file from a real SQLite store, rendered by headless Chromium (Debian's, as
CI installs it) into a screenshot that is checked for ink; nothing in it comes from the network, and what a
device controls is escaped."""
import base64
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest

from conftest import run_cli
from host_tools.report import DUPLICATES
from host_tools.store import open_store

CHROMIUM = "/usr/bin/chromium"
HEADER_RGB = (0x1F, 0x4E, 0x79)   # the report's header bar
LINE_RGB = (0x1F, 0x77, 0xB4)     # matplotlib's first colour: the first sensor line, the latency bars
EVIL_FW = "<script>alert(1)</script>"
ODD_SENSOR = "odd_$\\frac{"       # mathtext would choke on it: labels must be plain text


def add(s, dev, seq, ts, received, status="ok", **values):
    payload = {"device_id": dev, "seq": seq, "ts": ts, "uptime_s": seq * 30, "status": status, **values}
    s.add(dev, seq, ts, received, status, json.dumps(payload))


def fill(now):
    """dev1: 60 readings, seq 20-22 missing, health every 10th, one sensor error, an online status with a
    hostile fw; dev2: 30 readings, the first 3 without a clock, an odd sensor name, offline."""
    s = open_store(None, "demo")
    t0 = now - 3600
    for seq in range(60):
        if 20 <= seq <= 22:
            continue
        ts = t0 + seq * 30
        health = dict(heap_free=90000 - seq * 40, rssi=-60 - seq % 7, reconnects=seq // 25, queued=seq % 3,
                      cert_days=14) if seq % 10 == 0 else {}
        if seq == 40:
            add(s, "dev1", seq, ts, ts + 0.3, "sensor_error", temp_c=None, error="timeout", **health)
        else:
            add(s, "dev1", seq, ts, ts + 0.1 + (seq % 7) / 10, temp_c=21 + 2 * math.sin(seq / 8),
                humidity_pct=48.0 + seq % 5, **health)
    s.set_status("dev1", "online", json.dumps({"state": "online", "reset": "watchdog", "fw": EVIL_FW,
                                               "board": "esp32_dht22", "mp": "1.24.1", "boots": 7}), now - 100)
    for seq in range(30):
        ts = None if seq < 3 else t0 + seq * 60
        add(s, "dev2", seq, ts, (ts or t0 + seq * 60) + 0.5 + seq % 4, temp_c=18 + seq / 30, **{ODD_SENSOR: seq % 4})
    s.set_status("dev2", "offline", json.dumps({"state": "offline", "reason": "lost"}), now - 50)
    s.close()


def screenshot(html_file, png):
    """Debian's headless Chromium, as CI runs it, with a fresh profile; returns the PNG's RGB pixels (uint8)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium ('apt-get install -y chromium'; CI installs "
                    "it) -- the report must be seen rendering in a real browser")
    profile = tempfile.mkdtemp(prefix="sensorpub-chromium-")
    try:
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,2000",
                            f"file://{html_file}"], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert r.returncode == 0 and os.path.exists(png), r.stderr[-2000:]
    from matplotlib.image import imread
    img = imread(str(png))
    return (np.asarray(img)[:, :, :3] * 255).round().astype(np.uint8)


def problems(rgb) -> list:
    """Why a screenshot does not look like the report (empty: it does)."""
    out = []
    h, w, _ = rgb.shape
    ink = (rgb < 235).any(axis=2).mean()
    if ink < 0.05:
        out.append(f"only {ink:.1%} of the pixels are not white")
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours = int(np.count_nonzero(np.bincount(packed.ravel(), minlength=1 << 24)))
    if colours < 200:
        out.append(f"only {colours} distinct colours")
    top = rgb[:60]
    if (np.abs(top.astype(int) - HEADER_RGB).max(axis=2) <= 2).mean() < 0.5:
        out.append("no header bar across the top")
    line = (np.abs(rgb.astype(int) - LINE_RGB).max(axis=2) <= 12).sum()
    if line < 500:
        out.append(f"only {line} pixels of the chart colour: no chart drawn")
    return out


def test_the_report_renders_in_headless_chromium_with_nothing_from_the_network(home, tmp_path):
    fill(time.time())
    out = tmp_path / "report.html"
    r = run_cli("report", "--html", str(out))
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf"wrote {re.escape(str(out))} \(\d+ KB, 2 devices\)\n", r.stdout), r.stdout
    assert "report: from the store" in r.stderr and "2/2" in r.stderr and "Traceback" not in r.stderr  # progress
    text = out.read_text()

    # self-contained: no reference to anything outside the file
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"https?://", text) and "url(" not in text and "@import" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower() and "<iframe" not in text.lower()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 5, len(images)  # dev1: values, latency, health; dev2: values, latency (no health)
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    refs = re.findall(r"\b(?:src|href)\s*=\s*[\"']?([^\"' >]*)", text, re.I)
    assert len(refs) == 7 and all(v.startswith(("#d", "data:image/png;base64,")) for v in refs), refs[:3]

    # what it says: summary rows, gaps, duplicates, device text escaped
    assert '<a href="#d0">dev1</a>' in text and '<a href="#d1">dev2</a>' in text
    assert "3 missing</span>: seq 20&ndash;22" in text
    assert text.count(f"<dt>duplicates</dt><dd>{DUPLICATES}</dd>") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and EVIL_FW not in text
    assert '<td class="bad">offline</td>' in text and '<td class="bad">14!</td>' in text
    assert "cert_days 14 <span class=\"bad\">(expiring)</span>" in text

    png = tmp_path / "report.png"
    rgb = screenshot(out, png)
    assert rgb.shape[:2] == (2000, 1200), rgb.shape
    assert problems(rgb) == [], (problems(rgb), str(png))
    blank = np.full_like(rgb, 255)  # the check tells a blank page from the report
    assert len(problems(blank)) == 4


def test_device_selection_and_json(home, tmp_path):
    fill(time.time())
    out = tmp_path / "dev2.html"
    r = run_cli("report", "--html", str(out), "--device", "dev2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"path": str(out), "bytes": out.stat().st_size, "devices": 1}
    text = out.read_text()
    assert text.count("<section ") == 1 and "<h2>dev2 " in text and "<h2>dev1 " not in text
    assert "<td>dev1</td>" in text  # the fleet summary still lists every device, without a link
    assert "%|" not in r.stderr  # one device: no progress bar


def test_bad_input_is_one_line(home, tmp_path):
    cases = [
        (["report", "--html", "r.html"], "fleet 'demo' has no store"),
        (["report", "--html", "r.html", "--store", str(tmp_path / "none.sqlite")], "does not exist"),
    ]
    for argv, text in cases:
        r = run_cli(*argv)
        errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
        assert r.returncode == 1 and len(errors) == 1 and text in errors[0], (argv, r.stderr)
    open_store(None, "demo").close()  # a store with its tables and no reading
    r = run_cli("report", "--html", "r.html")
    assert r.returncode == 1 and "holds no readings: run 'sensorpub bridge --fleet demo'" in r.stderr, r.stderr
    fill(time.time())
    for argv, text in [(["--device", "ghost"], "no readings or status of 'ghost' in the store"),
                       (["--html", str(tmp_path / "no" / "r.html")], "does not exist: create it first"),
                       (["--html", str(tmp_path)], "is a directory")]:
        args = ["report", "--html", "r.html", *argv] if argv[0] == "--device" else ["report", *argv]
        r = run_cli(*args)
        errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
        assert r.returncode == 1 and len(errors) == 1 and text in errors[0], (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (home / "r.html").exists()


def test_what_a_device_sends_cannot_break_or_inject_into_the_report(home):
    from host_tools import report
    now = time.time()
    s = open_store(None, "demo")
    evil = "</td><img src=x onerror=alert(1)>\x1b[2J"
    add(s, "dev1", 1, 1e20, now - 5, temp_c=1.0)                   # a clock far off: drawn at its receive time
    add(s, "dev1", 2, now + 50, now - 4, **{evil: 2.0, "t": 1.0})  # ahead of the host: negative latency
    add(s, "dev1", 3, None, now - 3, "sensor_error", t=None, error=evil)
    s.set_status("dev1", "online", "online", now - 2)                # plain text, as very old firmware sent
    s.set_status("dev2", "online", json.dumps(["not", "a", "dict"]), now - 1)  # status only, no readings
    s.set_status("dev3", "offline", json.dumps({"state": "offline", "reason": evil, "fw": evil}), now)
    try:
        text = report.build(s, "demo", now=now)
    finally:
        s.close()
    assert "<img src=x" not in text and "\x1b" not in text and "onerror=alert(1)&gt;\\x1b[2J" in text
    assert text.count("<section ") == 3 and "no readings stored: only a status document" in text
    assert len(re.findall(r"data:image/png;base64,", text)) == 2  # dev1: values and latency, no health
