# DS18S20/DS18B20/DS1822 temperature sensor driver as an ESP32 firmware freezes it (same API as
# micropython-lib "ds18x20"), for the emulated board; it talks to the emulated 1-Wire bus (onewire.py).
from micropython import const

_CONVERT = const(0x44)
_RD_SCRATCH = const(0xBE)
_WR_SCRATCH = const(0x4E)


class DS18X20:
    def __init__(self, onewire):
        self.ow = onewire
        self.buf = bytearray(9)

    def scan(self):
        # family codes: 0x10 DS18S20, 0x22 DS1822, 0x28 DS18B20
        return [rom for rom in self.ow.scan() if rom[0] in (0x10, 0x22, 0x28)]

    def convert_temp(self):
        self.ow.reset(True)
        self.ow.writebyte(self.ow.SKIP_ROM)
        self.ow.writebyte(_CONVERT)

    def read_scratch(self, rom):
        self.ow.reset(True)
        self.ow.select_rom(rom)
        self.ow.writebyte(_RD_SCRATCH)
        self.ow.readinto(self.buf)
        if self.ow.crc8(self.buf):   # the CRC over all 9 bytes is 0 when the read is intact
            raise Exception("CRC error")
        return self.buf

    def write_scratch(self, rom, buf):
        self.ow.reset(True)
        self.ow.select_rom(rom)
        self.ow.writebyte(_WR_SCRATCH)
        self.ow.write(buf)

    def read_temp(self, rom):
        pad = self.read_scratch(rom)
        if rom[0] == 0x10:   # DS18S20: 0.5 C steps refined with COUNT_REMAIN / COUNT_PER_C
            half = pad[0] >> 1 | (0x80 if pad[1] else 0)
            whole = half - 256 if half & 0x80 else half
            return whole - 0.25 + (pad[7] - pad[6]) / pad[7]
        raw = pad[1] << 8 | pad[0]
        if raw & 0x8000:
            raw -= 0x10000
        return raw / 16
