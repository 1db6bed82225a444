# ESP32-S3 DevKitC: internal temperature by default (esp32.mcu_temperature(), Celsius), DHT22 or
# DS18B20 as options. The onboard RGB LED needs neopixel; a plain LED pin can be set with led_pin.
from _esp32 import Esp32Board

NAME = "esp32_s3"


class Board(Esp32Board):
    LED = -1
    SENSORS = ("internal", "dht22", "ds18b20")
