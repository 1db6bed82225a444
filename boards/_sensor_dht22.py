# DHT22 (AM2302) on sensor_pin: temperature and relative humidity. dht is frozen into stock ESP32 firmware.
import dht
from machine import Pin


class Sensor:
    def __init__(self, cfg):
        self.dev = dht.DHT22(Pin(cfg["sensor_pin"]))

    def read(self):
        self.dev.measure()  # OSError ETIMEDOUT when it does not answer
        return {"temp_c": round(self.dev.temperature(), 1), "humidity_pct": round(self.dev.humidity(), 1)}
