# The chip's own temperature sensor. Each ESP32 build has one of two functions (ports/esp32/modesp32.c):
# mcu_temperature() on the S2/S3/C3/C6 (Celsius), raw_temperature() on the original ESP32 (Fahrenheit,
# uncalibrated).
import esp32


class Sensor:
    def __init__(self, cfg):
        self.mcu = getattr(esp32, "mcu_temperature", None)

    def read(self):
        c = self.mcu() if self.mcu else (esp32.raw_temperature() - 32) / 1.8
        return {"temp_c": round(c, 1)}
