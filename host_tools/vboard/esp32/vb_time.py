# "time" of the emulated ESP32 (MicroPython). The wall clock is the emulated RTC: 2000-01-01 00:00:00
# at power-on, set by machine.RTC().datetime() and ntptime.settime(), kept over resets and deep sleep
# (ROM/rtc.json). ESP32 builds of 1.23-1.28 count from 2000 (MICROPY_EPOCH_IS_2000; gettimeofday is
# 2000-based, ports/esp32/main.c adds TIMEUTILS_SECONDS_1970_TO_2000 for mbedTLS), so gmtime(0)[0] == 2000
# and gmtime()/localtime() are 8-tuples with no time zone. ticks_* count from boot and wrap at 2**30,
# as MICROPY_PY_TIME_TICKS_PERIOD on a 32-bit build.
import vbhw

_t = vbhw.real_time
_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD >> 1
_DAY = 86400


def sleep(seconds):
    _t.sleep(seconds)


def sleep_ms(ms):
    _t.sleep_ms(ms)


def sleep_us(us):
    _t.sleep_us(us)


def ticks_ms():
    return (_t.ticks_ms() - vbhw.S[vbhw.BOOT_MS]) & _MASK


def ticks_us():
    return (_t.ticks_us() - vbhw.S[vbhw.BOOT_US]) & _MASK


def ticks_cpu():
    # the CPU cycle counter (esp_cpu_get_cycle_count) at machine.freq()
    return ((_t.ticks_us() - vbhw.S[vbhw.BOOT_US]) * (vbhw.S[vbhw.FREQ] // 1000000)) & _MASK


def ticks_add(ticks, delta):
    if not -_HALF < delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


def ticks_diff(ticks1, ticks2):
    return ((ticks1 - ticks2 + _HALF) & _MASK) - _HALF


def time():
    return vbhw.rtc_ns() // 1000000000


def time_ns():
    return vbhw.rtc_ns()


def _days(y, m, d):
    # days from 2000-01-01 to y-m-d (proleptic Gregorian; months may be out of 1..12)
    y += (m - 1) // 12
    m = (m - 1) % 12 + 1
    if m <= 2:
        y -= 1
        m += 12
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * (m - 3) + 2) // 5 + d - 1 - 730425


def _civil(n):
    # (year, month, day) of day n after 2000-01-01
    n += 730425   # days since 0000-03-01
    era = n // 146097
    doe = n - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def gmtime(secs=None):
    if secs is None:
        secs = time()
    secs = int(secs)
    days, rem = secs // _DAY, secs % _DAY
    y, m, d = _civil(days)
    # weekday: 0 is Monday; 2000-01-01 was a Saturday
    return (y, m, d, rem // 3600, rem // 60 % 60, rem % 60, (days + 5) % 7, days - _days(y, 1, 1) + 1)


def localtime(secs=None):
    return gmtime(secs)   # the ESP32 port has no time zone


def mktime(local_time):
    if not 8 <= len(local_time) <= 9:
        raise TypeError("mktime needs a tuple of length 8 or 9")
    y, mo, d, h, mi, s = (int(v) for v in local_time[:6])
    return _days(y, mo, 1) * _DAY + (d - 1) * _DAY + h * 3600 + mi * 60 + s
