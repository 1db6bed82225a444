# "machine" of the emulated ESP32 (MicroPython). Behaviour and errors follow ports/esp32 (modmachine.c,
# machine_pin.c, machine_wdt.c, machine_rtc.c) of the profile's release; resets end the interpreter with
# the exit codes in vbhw.py and the host restarts it.
import vb_sensors
import vbhw

_t = vbhw.real_time
_S = vbhw.S

# reset causes (modmachine.c reset_reason_t) and wake-up reasons (esp_sleep_wakeup_cause_t)
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
SLEEP = 2
DEEPSLEEP = 4
PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

_UNSET = object()   # "argument not given" (the C code's MP_OBJ_NULL)


def _level(pid, pull):
    # what an input reads: hw.json "pins" if the host drives the pin, else its pull resistor
    v = (vbhw.hw().get("pins") or {}).get(str(pid))
    if v is not None:
        return 1 if v else 0
    return 1 if pull and pull & Pin.PULL_UP else 0


class Pin:
    IN = 1            # GPIO_MODE_INPUT
    OUT = 3           # GPIO_MODE_INPUT_OUTPUT: reads back what it drives
    OPEN_DRAIN = 7    # GPIO_MODE_INPUT_OUTPUT_OD
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3
    _all = [None] * 49   # one object per GPIO, as machine_pin_obj_table

    def __new__(cls, id, *args, **kwargs):
        if isinstance(id, Pin):
            return id
        if not isinstance(id, int) or id not in vbhw.prof().get("pins", ()):
            raise ValueError("invalid pin")
        p = cls._all[id]
        if p is None:
            p = object.__new__(cls)
            p._id, p._mode, p._pull, p._out, p._drive, p._irq = id, None, None, 0, 2, None
            cls._all[id] = p
        return p

    def __init__(self, id, mode=None, pull=-1, *, value=_UNSET, drive=_UNSET, hold=_UNSET):
        self.init(mode, pull, value=value, drive=drive, hold=hold)

    def init(self, mode=None, pull=-1, *, value=_UNSET, drive=_UNSET, hold=_UNSET):
        if value is not _UNSET:
            self._out = 1 if value else 0
        if drive is not _UNSET and drive is not None and 0 <= drive <= 3:
            self._drive = drive
        if mode is not None and mode != -1:
            if self._id in vbhw.prof().get("input_only", ()) and mode & 2:
                raise ValueError("pin can only be input")
            self._mode = mode
        if pull != -1:
            self._pull = pull or None
        return None

    def value(self, x=_UNSET):
        if x is _UNSET:
            if self._mode == Pin.OUT:
                return self._out
            if self._mode == Pin.OPEN_DRAIN and not self._out:
                return 0
            return _level(self._id, self._pull)
        self._out = 1 if x else 0
        return None

    def __call__(self, x=_UNSET):
        return self.value(x)

    def on(self):
        self._out = 1

    def off(self):
        self._out = 0

    def irq(self, handler=None, trigger=3, wake=None):
        # accepted and kept; the emulated pins have no edges to report
        self._irq = (handler, trigger, wake)
        return _PinIRQ(self)

    def __repr__(self):
        return "Pin(%d)" % self._id


class _PinIRQ:
    def __init__(self, pin):
        self.pin = pin

    def trigger(self):
        return self.pin._irq[1] if self.pin._irq else 0


if vbhw.feature("pin_toggle"):   # Pin.toggle() is in the ESP32 port from 1.25.0
    def _toggle(self):
        self._out ^= 1
    Pin.toggle = _toggle


class WDT:
    # the task watchdog: once created it cannot be stopped; it survives a soft reset
    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError()
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        vbhw.wdt_arm(timeout)

    def feed(self):
        _S[vbhw.WDT_FED] = _t.ticks_ms()


class RTC:
    _one = None

    def __new__(cls):
        if cls._one is None:
            cls._one = object.__new__(cls)
        return cls._one

    def __init__(self):
        pass

    def datetime(self, datetimetuple=None):
        import vb_time
        if datetimetuple is None:
            us = vbhw.rtc_ns() // 1000
            g = vb_time.gmtime(us // 1000000)
            return (g[0], g[1], g[2], g[6], g[3], g[4], g[5], us % 1000000)
        if len(datetimetuple) != 8:
            raise ValueError("tuple/list has wrong length")
        y, mo, d, _, h, mi, s, us = datetimetuple   # the weekday is ignored, as on the ESP32
        secs = vb_time.mktime((y, mo, d, h, mi, s, 0, 0))
        vbhw.set_rtc_ns(secs * 1000000000 + us * 1000)
        return None

    def init(self, datetime):
        self.datetime(datetime)

    def memory(self, data=_UNSET):
        if data is _UNSET:
            try:
                with vbhw.fopen("rtc_mem.bin", "rb") as f:
                    return f.read()
            except OSError:
                return b""
        if len(data) > vbhw.prof().get("rtc_mem_max", 2048):
            raise ValueError("buffer too long")
        with vbhw.fopen("rtc_mem.bin", "wb") as f:
            f.write(bytes(data))
        return None


def reset():
    raise SystemExit(vbhw.HARD)


def soft_reset():
    raise SystemExit(vbhw.SOFT)


def reset_cause():
    return _S[vbhw.CAUSE]


def wake_reason():
    return _S[vbhw.WAKE]


def unique_id():
    return _S[vbhw.MAC]   # esp_efuse_mac_get_default(): the base (STA) MAC


def freq(hz=None):
    if hz is None:
        return _S[vbhw.FREQ]
    mhz = hz // 1000000
    allowed = vbhw.prof().get("freqs_mhz", [20, 40, 80, 160, 240])
    if mhz not in allowed:
        names = ["%dMHz" % f if f != 80 else "80Mhz" for f in allowed]   # sic, as modmachine.c
        raise ValueError("frequency must be " + ", ".join(names[:-1]) + " or " + names[-1])
    _S[vbhw.FREQ] = mhz * 1000000
    return None


def idle():
    pass


def lightsleep(time_ms=None):
    wdt, _S[vbhw.WDT_MS] = _S[vbhw.WDT_MS], 0   # the task WDT's timer group is clock-gated while asleep
    if time_ms is None:
        while True:   # no wake-up source is emulated
            _t.sleep(1)
    _t.sleep_ms(time_ms)
    _S[vbhw.WDT_FED] = _t.ticks_add(_S[vbhw.WDT_FED] or 0, time_ms)
    _S[vbhw.WDT_MS] = wdt
    _S[vbhw.WAKE] = TIMER_WAKE
    vbhw.save_rtc()


def sleep(time_ms=None):
    lightsleep(time_ms)   # deprecated alias of lightsleep()


def deepsleep(time_ms=None):
    vbhw.save_rtc(TIMER_WAKE if time_ms is not None else 0)
    vbhw.save("sleep.json", {"ms": time_ms})
    raise SystemExit(vbhw.DEEPSLEEP)


def disable_irq():
    return 0


def enable_irq(state):
    pass


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    _t.sleep_us(timeout_us)   # no pulse ever arrives on an emulated pin
    return -2


def dht_readinto(pin, buf):
    # the DHT11/DHT22 exchange of drivers/dht/dht.c, answered from hw.json (vb_sensors.py)
    vb_sensors.dht_readinto(Pin(pin)._id, buf)
