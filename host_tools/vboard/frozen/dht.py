# DHT11/DHT22 driver as an ESP32 firmware freezes it, for the emulated board. The 5-byte exchange
# happens in machine.dht_readinto (the emulated one answers from hw.json): a silent sensor raises
# OSError(ETIMEDOUT), a corrupted frame fails the checksum here, as with the real driver.
from machine import dht_readinto


class DHTBase:
    def __init__(self, pin):
        self.pin = pin
        self.buf = bytearray(5)

    def measure(self):
        frame = self.buf
        dht_readinto(self.pin, frame)
        if (frame[0] + frame[1] + frame[2] + frame[3]) & 0xFF != frame[4]:
            raise Exception("checksum error")


class DHT11(DHTBase):
    # integral %RH in byte 0, integral degrees C in byte 2
    def humidity(self):
        return self.buf[0]

    def temperature(self):
        return self.buf[2]


class DHT22(DHTBase):
    # tenths of %RH in bytes 0-1; tenths of degrees C in bytes 2-3, bit 15 the sign
    def humidity(self):
        return (self.buf[0] << 8 | self.buf[1]) * 0.1

    def temperature(self):
        tenths = (self.buf[2] & 0x7F) << 8 | self.buf[3]
        return -tenths * 0.1 if self.buf[2] & 0x80 else tenths * 0.1
