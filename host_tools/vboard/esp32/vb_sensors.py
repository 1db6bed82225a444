# Sensors on the emulated ESP32's pins (MicroPython): the DHT11/DHT22 frame that machine.dht_readinto
# returns, from hw.json's "dht22"/"dht11" sections. Readings drift a little, deterministically from the
# read count; faults: "timeout" (no answer: OSError(ETIMEDOUT), 116 with the ESP32's newlib errno) and
# "garbage" (a frame whose checksum does not match), "hang" (never returns: a stuck driver, for the watchdog).
import vbhw

_t = vbhw.real_time
_reads = {}
_BuiltinOSError = OSError
_NAMES = {116: "ETIMEDOUT", 113: "ECONNABORTED", 104: "ECONNRESET", 118: "EHOSTUNREACH", 119: "EINPROGRESS"}


class OSError(_BuiltinOSError):
    # an OSError carrying an errno of the ESP32's newlib (ETIMEDOUT is 116 there, 110 on Linux): the
    # Unix port has no name for it, so str() is spelled out as the board prints it, "[Errno 116] ETIMEDOUT"
    def __str__(self):
        n = self.args[0] if self.args else 0
        return "[Errno %d] %s" % (n, _NAMES[n]) if n in _NAMES else _BuiltinOSError.__str__(self)


def etimedout():
    return OSError(vbhw.prof().get("etimedout", 116))


def dht_readinto(pid, buf):
    # the DHT11/DHT22 one-wire exchange (drivers/dht/dht.c): start pulse, then 5 bytes or ETIMEDOUT
    if len(buf) < 5:
        raise ValueError("buffer too small")
    _t.sleep_ms(268)   # 250 ms high then 18 ms low, as the C driver drives the line
    for name in ("dht22", "dht11"):
        d = vbhw.dev(name)
        if d.get("present") and d.get("pin") == pid:
            break
    else:
        raise etimedout()
    if d.get("fault") == "timeout":
        raise etimedout()
    while d.get("fault") == "hang":  # a driver stuck with interrupts off: only the watchdog gets the board back
        _t.sleep_ms(50)
        d = vbhw.dev(name)
    n = _reads[name] = _reads.get(name, 0) + 1
    t = d.get("temp_c", 20.0) + vbhw.drift(name, d.get("drift", 0), n)
    h = min(100.0, max(0.0, d.get("humidity_pct", 50.0) + 2 * vbhw.drift(name + "h", d.get("drift", 0), n)))
    if name == "dht22":
        hh, tt = int(h * 10 + 0.5), int(abs(t) * 10 + 0.5)
        raw = [hh >> 8, hh & 255, (tt >> 8) | (0x80 if t < 0 else 0), tt & 255]
    else:
        raw = [int(h), 0, int(t) & 255, 0]
    check = sum(raw) & 255
    if d.get("fault") == "garbage":
        raw[n % 4] ^= 0x24   # a corrupted bit pattern: the checksum no longer matches
    for i in range(4):
        buf[i] = raw[i]
    buf[4] = check
