# ESP32 DevKit (ESP32_GENERIC firmware): DHT22 on sensor_pin (default 4), LED on GPIO2.
from _esp32 import Esp32Board

NAME = "esp32_generic"


class Board(Esp32Board):
    LED = 2
