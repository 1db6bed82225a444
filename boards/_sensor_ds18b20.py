# DS18B20 on a 1-Wire bus on sensor_pin: temperature of the first one found. onewire and ds18x20 are frozen
# into stock ESP32 firmware.
import time

import ds18x20
import onewire
from machine import Pin


class Sensor:
    def __init__(self, cfg):
        self.pin = cfg["sensor_pin"]
        self.dev = ds18x20.DS18X20(onewire.OneWire(Pin(self.pin)))

    def read(self):
        roms = self.dev.scan()
        if not roms:
            raise OSError("no DS18B20 on pin %d" % self.pin)
        self.dev.convert_temp()
        time.sleep_ms(750)  # conversion time at 12-bit resolution
        return {"temp_c": self.dev.read_temp(roms[0])}
