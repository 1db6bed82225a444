# 1-Wire bus driver as an ESP32 firmware freezes it (same API as micropython-lib "onewire"), for the
# emulated board. The bus is emulated at byte level: reset/presence, SKIP_ROM, MATCH_ROM, READ_ROM and
# the DS18B20 function commands (CONVERT T, READ/WRITE SCRATCHPAD) against the sensors hw.json puts on
# the pin. scan() lists the devices directly instead of running the bit-level SEARCH ROM.
import vbhw


class OneWireError(Exception):
    pass


_state = {}   # per ROM: [last raw temperature, conversion start (ms) or None, config byte]


def _crc8(data):
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def _devices(pin_id):
    d = vbhw.dev("ds18b20")
    if not d.get("present", True) or d.get("fault") == "absent" or d.get("pin") != pin_id:
        return []
    rom = bytes(int(d["rom"][i:i + 2], 16) for i in range(0, 16, 2))
    return [(rom, d)]


class OneWire:
    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC

    def __init__(self, pin):
        self.pin = pin
        self.pin.init(pin.OPEN_DRAIN, pin.PULL_UP)
        self._mode, self._sel, self._out, self._acc = None, [], [], bytearray()

    def _on_bus(self):
        return _devices(self.pin._id)

    def reset(self, required=False):
        devs = self._on_bus()
        if required and not devs:
            raise OneWireError
        self._mode, self._sel, self._out, self._acc = "rom", [], [], bytearray()
        return bool(devs)

    def readbit(self):
        now = vbhw.real_time.ticks_ms()
        for rom, _ in self._sel:   # a converting DS18B20 holds the line low
            st = _state.get(rom)
            if st and st[1] is not None and vbhw.real_time.ticks_diff(now, st[1]) < 750:
                return 0
        return 1

    def readbyte(self):
        return self._out.pop(0) if self._out else 0xFF

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.readbyte()

    def writebit(self, value):
        pass

    def writebyte(self, value):
        if self._mode == "rom":
            if value == self.SKIP_ROM:
                self._sel, self._mode = self._on_bus(), "func"
            elif value == self.MATCH_ROM:
                self._mode = "match"
            elif value == 0x33:   # READ ROM: only meaningful with one device
                devs = self._on_bus()
                self._out = list(devs[0][0]) if len(devs) == 1 else []
            return
        if self._mode == "match":
            self._acc.append(value)
            if len(self._acc) == 8:
                self._sel = [dv for dv in self._on_bus() if dv[0] == bytes(self._acc)]
                self._mode = "func"
            return
        if self._mode == "func":
            for rom, d in self._sel:
                _function(rom, d, value, self)
            if value == 0x4E:
                self._mode, self._acc = "wscratch", bytearray()
            return
        if self._mode == "wscratch":
            self._acc.append(value)   # TH, TL, then the config byte (resolution)
            if len(self._acc) == 3:
                for rom, _ in self._sel:
                    _state.setdefault(rom, [0x0550, None, 0x7F])[2] = value

    def write(self, buf):
        for b in buf:
            self.writebyte(b)

    def select_rom(self, rom):
        self.reset()
        self.writebyte(self.MATCH_ROM)
        self.write(rom)

    def scan(self):
        if not self.reset():
            return []
        return [bytearray(rom) for rom, _ in self._on_bus()]

    def crc8(self, data):
        return _crc8(data)


_reads = {}


def _function(rom, d, cmd, bus):
    st = _state.setdefault(rom, [0x0550, None, 0x7F])   # 85.0 C is the power-on value
    now = vbhw.real_time.ticks_ms()
    if st[1] is not None and vbhw.real_time.ticks_diff(now, st[1]) >= 750:
        n = _reads[rom] = _reads.get(rom, 0) + 1
        t = d.get("temp_c", 20.0) + vbhw.drift("ds18b20", d.get("drift", 0), n)
        st[0], st[1] = int(t * 16 + (0.5 if t >= 0 else -0.5)) & 0xFFFF, None
    if cmd == 0x44:   # CONVERT T: 750 ms at 12-bit resolution
        st[1] = now
    elif cmd == 0xBE:   # READ SCRATCHPAD
        pad = bytearray([st[0] & 0xFF, st[0] >> 8, 0x4B, 0x46, st[2], 0xFF, 0x0C, 0x10])
        pad.append(_crc8(pad))
        if d.get("fault") == "garbage":
            pad[1 + len(_reads) % 3] ^= 0x21   # a corrupted read: the CRC no longer matches
        bus._out = list(pad) if len(bus._sel) == 1 else [0xFF] * 9
