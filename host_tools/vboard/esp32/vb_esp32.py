# "esp32" of the emulated ESP32 (MicroPython), after ports/esp32/modesp32.c. The chip temperature is
# hw.json's mcu.temp_c. As in the real module, the original ESP32 has only raw_temperature()
# (uncalibrated, read as degrees Fahrenheit) and the S2/S3/C3/C6 have only mcu_temperature()
# (calibrated degrees Celsius, rounded): calling the other raises AttributeError.
import vbhw

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = 4
HEAP_EXEC = 1

_wake = {}   # wake-up sources are kept, but only a timer wakes the emulated chip from deep sleep


def _celsius():
    return vbhw.dev("mcu").get("temp_c", 40.0)


if vbhw.prof().get("temperature") == "raw_temperature":
    def raw_temperature():
        return int(_celsius() * 1.8 + 32 + 0.5)
else:
    def mcu_temperature():
        return int(_celsius() + 0.5)


def wake_on_touch(wake):
    _wake["touch"] = bool(wake)


def wake_on_ulp(wake):
    _wake["ulp"] = bool(wake)


def wake_on_ext0(pin=None, level=None):
    _wake["ext0"] = (pin, level)


def wake_on_ext1(pins=None, level=None):
    _wake["ext1"] = (pins, level)


def wake_on_gpio(pins=None, level=None):
    _wake["gpio"] = (pins, level)


def idf_heap_info(capabilities):
    # (total, free, largest free block, minimum free) per IDF heap region; a plausible fixed picture
    if capabilities & HEAP_EXEC:
        return [(32768, 28000, 27648, 27000)]
    return [(160000, 90000, 65536, 80000), (110000, 60000, 40000, 55000)]
