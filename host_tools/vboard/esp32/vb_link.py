# The work of vbhw's watcher thread (MicroPython), every 100 ms: the Wi-Fi link -- the STA joins
# hw.json's "wifi" access point, loses it and rejoins as network_wlan.c's event handler does, and
# open sockets break when the link drops -- and the watchdog. step() alone writes the LINK and VIS
# slots, the main thread ACTIVE, REQ and GEN (vb_network.py). SOCKS never changes size (no GIL).
import vbhw

_S = vbhw.S
_t = vbhw.real_time
SOCKS = [None] * 32   # open sockets: the main thread stores them, the watcher closes them


def _ap_ok(ap, ssid, key_hash):
    seen = ap.get("up", True) and ap.get("in_range", True) and ap.get("ssid") == ssid
    return seen, seen and vbhw.khash(ap.get("password")) == key_hash


def restore():
    # after a soft reset the ESP32 is still associated (vbhw restored REQ from wifi.json)
    req = _S[vbhw.REQ]
    if req is not None and _ap_ok(vbhw.dev("wifi"), req[0], req[1])[1]:
        _S[vbhw.LINK] = (True, vbhw.STAT_GOT_IP, req[3], _t.ticks_ms())


def step(h):
    req, link, now = _S[vbhw.REQ], _S[vbhw.LINK], _t.ticks_ms()
    if req is None or not _S[vbhw.ACTIVE]:
        if link[0]:
            break_sockets()
            _S[vbhw.LINK] = (False, vbhw.STAT_IDLE, None, now)
        return
    ssid, key, t0, gen = req
    ap = h.get("wifi") or {}
    join = ap.get("join_ms", 300)
    seen, ok = _ap_ok(ap, ssid, key)
    mine = link[2] == gen
    if mine and link[0]:
        if not ok:   # beacon timeout: the ESP32 reports STAT_CONNECTING and keeps retrying
            break_sockets()
            _S[vbhw.VIS] = None
            _S[vbhw.LINK] = (False, vbhw.STAT_CONNECTING, gen, now)
        return
    start = link[3] if mine else t0
    if not mine:
        _S[vbhw.LINK] = (False, vbhw.STAT_CONNECTING, gen, t0)
    if not seen:   # each retry finds no AP
        _S[vbhw.VIS] = None
        if _t.ticks_diff(now, start) >= join:
            _S[vbhw.LINK] = (False, vbhw.STAT_NO_AP_FOUND, gen, start)
        return
    if _S[vbhw.VIS] is None:
        _S[vbhw.VIS] = now
    since = max(start, _S[vbhw.VIS])
    if _t.ticks_diff(now, since) >= join:
        if ok:
            _S[vbhw.LINK] = (True, vbhw.STAT_GOT_IP, gen, now)
        else:
            _S[vbhw.LINK] = (False, vbhw.STAT_WRONG_PASSWORD, gen, since)


def break_sockets():
    for i in range(len(SOCKS)):
        s = SOCKS[i]
        if s is not None:
            try:
                s.close()   # its next read or write raises OSError (EBADF)
            except Exception:
                pass


def register(sock):
    for i in range(len(SOCKS)):
        s = SOCKS[i]
        if s is None or s.fileno() < 0:
            SOCKS[i] = sock
            return
    i = ((_S[vbhw.NEXT] or 0) + 1) % len(SOCKS)   # all in use: forget the oldest slot's socket
    _S[vbhw.NEXT] = i
    SOCKS[i] = sock


def watchdog():
    ms = _S[vbhw.WDT_MS]
    if ms and not _S[vbhw.WDT_FIRED] and _t.ticks_diff(_t.ticks_ms(), _S[vbhw.WDT_FED]) > ms:
        _S[vbhw.WDT_FIRED] = True
        try:
            with vbhw.fopen("wdt.expired", "w") as f:
                f.write("%d\n" % ms)
        except OSError:
            pass
        t = _t.ticks_diff(_t.ticks_ms(), _S[vbhw.BOOT_MS])
        vbhw.real_sys.stdout.write("E (%d) task_wdt: Task watchdog got triggered. The following tasks/users "
                                   "did not reset the watchdog in time:\r\nE (%d) task_wdt:  - mpy_machine_wdt "
                                   "(CPU 0)\r\n" % (t, t))
