# vbhw: shared state of the emulated ESP32 (MicroPython, runs on the virtual board; valid CPython syntax).
#
# ROM is the host folder run/vboard-NAME/rom, mounted with VfsPosix at /.vb on the board:
#   hw.json      host -> board  hardware state and faults (host_tools/vboard/hw.py); only the host writes
#                               it, atomically (tmp + rename); the board keeps its last good copy
#   profile.json host -> board  the board profile (host_tools/vboard/profiles.py), written at start
#   sleep.json   board -> host  machine.deepsleep(ms) writes {"ms": N} ({"ms": null}: no timer wake-up,
#                               the chip sleeps until power-off) then exits with code 13; the host starts
#                               the interpreter again N ms later with reset cause 4 (DEEPSLEEP_RESET)
#   wdt.expired  board -> host  machine.WDT was not fed in time: the watcher thread writes it; the host
#                               kills the interpreter, deletes the file, restarts with cause 3 (WDT_RESET)
#   rtc.json     board          RTC clock offset and the wake reason: kept over resets and deep sleep
#   rtc_mem.bin  board          machine.RTC().memory(): same lifetime
#   wdt.json     board          an armed WDT: survives a soft reset, as the ESP32's task WDT does
#   wifi.json    board          the STA connection, which an ESP32 keeps over a soft reset
#   efuse.json   board          the chip's base MAC (machine.unique_id()), made at first boot
# At power-on (cause 1) the board deletes rtc.json, rtc_mem.bin, wdt.json and wifi.json itself; after
# any other chip reset (2, 3, 4) wdt.json and wifi.json; a soft reset (5) keeps them all.
#
# Exit codes (as vbmachine.py): 11 soft reset, 12 machine.reset(), 13 deep sleep. The runtime calls
# install(cause) once per interpreter start, after mounting /.vb and "/", before boot.py, with the
# cause machine.reset_cause() must report: 1 power-on, 2 machine.reset() or a crash (ESP_RST_SW and
# ESP_RST_PANIC are HARD_RESET in modmachine.c), 3 watchdog, 4 deep sleep, 5 soft reset (exit codes
# 10 and 11). The host path of ROM must be among the interpreter's arguments (runtime.py's argv has
# it), or be passed: install(cause, rom="/abs/path/rom").
import sys
import os
import time
import json
import _thread
import binascii
import hashlib

ROM = "/.vb/"
HARD, SOFT, DEEPSLEEP = 12, 11, 13
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
TIMER_WAKE = 4
EPOCH_2000_NS = 946684800 * 10**9   # the ESP32's time counts from 2000-01-01 (MICROPY_EPOCH_IS_2000)
STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = 1000, 1001, 1010
STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD = 201, 202

real_sys = sys     # the Unix port's modules, kept before install() replaces them in sys.modules
real_os = os
real_time = time

# Slots shared with the watcher thread. The Unix port's threads run without a GIL, so no container
# both threads use is ever resized, and each slot has one writer (noted) unless the value is the same.
S = [None] * 24
(HW, HWKEY, PROF, CAUSE, RTCOFF, WAKE, FREQ, BOOT_MS, BOOT_US, ACTIVE, REQ, GEN, LINK, VIS,
 WDT_MS, WDT_FED, WDT_FIRED, RUN, NEXT, MAC) = range(20)


# ROM files are reached through a root-less VfsPosix with the host path of ROM, not through /.vb:
# a VfsPosix with a root builds every path in one shared buffer, so the watcher thread and the main
# thread would garble each other's paths (and its rename() is wrong before extmod/vfs_posix.c
# 3a89fc2411). A root-less one keeps no state. FS[0] is it, FS[1] the host path of ROM with "/".
FS = [None, ROM]


def fopen(name, mode="r"):
    return FS[0].open(FS[1] + name, mode) if FS[0] else open(ROM + name, mode)


def load(name, default=None):
    try:
        with fopen(name) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return default


def save(name, obj):
    text = json.dumps(obj)
    tmp = name + ".tmp" if FS[0] else name   # atomic where rename works
    with fopen(tmp, "w") as f:
        f.write(text)
    if tmp != name:
        FS[0].rename(FS[1] + tmp, FS[1] + name)


def rm(name):
    try:
        FS[0].remove(FS[1] + name) if FS[0] else os.remove(ROM + name)
    except OSError:
        pass


def exists(name):
    try:
        FS[0].stat(FS[1] + name) if FS[0] else os.stat(ROM + name)
        return True
    except OSError:
        return False


def _find_rom(rom):
    # the host folder mounted at /.vb: given, or the runtime's argument that holds esp32/vbhw.py
    import vfs
    fs = vfs.VfsPosix()
    for c in ([rom] if rom else []) + [a for a in sys.argv[1:] if isinstance(a, str)]:
        try:
            fs.stat(c.rstrip("/") + "/esp32/vbhw.py")
        except OSError:
            continue
        FS[0], FS[1] = fs, c.rstrip("/") + "/"
        return


def hw():
    # the hardware state; re-read only when hw.json changed (inode, size or mtime)
    try:
        st = FS[0].stat(FS[1] + "hw.json") if FS[0] else os.stat(ROM + "hw.json")
        key = (st[1], st[6], st[8])
    except OSError:
        key = None
    if key != S[HWKEY] or S[HW] is None:
        d = load("hw.json")
        if isinstance(d, dict):
            S[HW] = d
            S[HWKEY] = key
    return S[HW] or {}


def khash(key):
    # Wi-Fi passwords are compared and kept (wifi.json) only as SHA-256, never in clear on the host
    return binascii.hexlify(hashlib.sha256((key or "").encode()).digest()).decode()


def dev(name):
    return hw().get(name) or {}


def prof():
    return S[PROF]


def feature(name):
    return bool((S[PROF].get("features") or {}).get(name))


def drift(name, amplitude, count):
    # a deterministic wobble in [-amplitude, amplitude] from the read count, so readings differ
    return amplitude * (((count * 37 + len(name)) % 21) - 10) / 10


# ---- RTC: ns since 2000-01-01, counting with the host clock; offset kept in rtc.json
def rtc_ns():
    return time.time_ns() - EPOCH_2000_NS + S[RTCOFF]


def set_rtc_ns(ns):
    S[RTCOFF] = ns - (time.time_ns() - EPOCH_2000_NS)
    save_rtc()


def save_rtc(sleep_wake=0):
    # wake: this boot's wake-up reason (kept over a soft reset); sleep_wake: the next one after deep sleep
    save("rtc.json", {"off_ns": S[RTCOFF], "wake": S[WAKE] or 0, "sleep_wake": sleep_wake})


# ---- Wi-Fi link: vb_link.py runs it (the watcher writes LINK and VIS; the main thread ACTIVE, REQ, GEN)
def link_up():
    req, link = S[REQ], S[LINK]
    return bool(S[ACTIVE] and req is not None and link[2] == req[3] and link[0])


# ---- watchdog (machine.WDT): the watcher thread enforces it (vb_link.watchdog)
def wdt_arm(ms):
    S[WDT_FED] = time.ticks_ms()
    S[WDT_MS] = ms
    save("wdt.json", {"timeout": ms})


def _watch(link):
    while S[RUN]:
        time.sleep_ms(100)
        try:
            link.step(hw())
            link.watchdog()
        except Exception:
            pass   # never let the watcher die


def _mac():
    e = load("efuse.json")
    if not (isinstance(e, dict) and len(e.get("mac", "")) == 12):
        e = {"mac": "240ac4" + "".join("%02x" % b for b in os.urandom(3))}   # an Espressif OUI
        save("efuse.json", e)
    return bytes(int(e["mac"][i:i + 2], 16) for i in range(0, 12, 2))


def _reset_domain(cause):
    if cause == PWRON_RESET:   # power-off clears RTC memory and clock; a chip reset keeps them
        for f in ("rtc.json", "rtc_mem.bin", "wdt.json", "wifi.json"):
            rm(f)
    elif cause != SOFT_RESET:  # a chip reset stops Wi-Fi and the task watchdog
        rm("wdt.json")
        rm("wifi.json")
    rm("wdt.expired")
    rtc = load("rtc.json") or {}
    off = rtc.get("off_ns")
    S[RTCOFF] = off if isinstance(off, int) else EPOCH_2000_NS - time.time_ns()   # 2000-01-01 00:00:00
    # esp_sleep_get_wakeup_cause(): set by a deep-sleep wake-up, unchanged by a soft reset
    S[WAKE] = {DEEPSLEEP_RESET: rtc.get("sleep_wake", TIMER_WAKE), SOFT_RESET: rtc.get("wake", 0)}.get(cause, 0)
    save_rtc()
    w = load("wdt.json") if cause == SOFT_RESET else None
    if isinstance(w, dict) and w.get("timeout"):
        wdt_arm(w["timeout"])
    wf = load("wifi.json") if cause == SOFT_RESET else None
    if isinstance(wf, dict):   # Wi-Fi stays up over a soft reset
        S[ACTIVE] = True
        S[GEN] = 1
        S[REQ] = (wf.get("ssid"), wf.get("key_sha256"), time.ticks_ms(), 1)
        S[LINK] = (False, STAT_IDLE, None, 0)   # vb_link.restore() brings the link back up


def install(cause, rom=None):
    # put the emulated modules in sys.modules and start the watcher; called once per interpreter start
    # (rom: the host path of the folder mounted at /.vb; by default found among sys.argv)
    _find_rom(rom)
    S[CAUSE] = cause
    S[BOOT_MS] = time.ticks_ms()
    S[BOOT_US] = time.ticks_us()
    S[PROF] = load("profile.json") or {}
    S[FREQ] = S[PROF].get("cpu_freq", 160000000)
    S[ACTIVE] = False
    S[GEN] = 0
    S[LINK] = (False, STAT_IDLE, None, 0)
    S[MAC] = _mac()
    hw()
    _reset_domain(cause)
    here = ROM + "esp32"
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        import vb_link
        vb_link.restore()
        import vb_time
        import vb_machine
        import vb_network
        import vb_esp32
        import vb_socket
        import vb_sys
        import vb_os   # after vb_sys, whose attrtuple it uses
    finally:
        if added:
            sys.path.remove(here)
    mods = {"time": vb_time, "machine": vb_machine, "network": vb_network, "esp32": vb_esp32,
            "socket": vb_socket, "sys": vb_sys, "os": vb_os}
    for name, mod in mods.items():
        sys.modules[name] = mod
        if name not in ("network", "esp32"):   # u-aliases of the extensible built-ins, and usys
            sys.modules["u" + name] = mod
    S[RUN] = True
    _thread.start_new_thread(_watch, (vb_link,))
