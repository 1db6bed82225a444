# ESP32-C3 SuperMini / DevKitM: internal temperature by default (esp32.mcu_temperature()), LED on GPIO8.
from _esp32 import Esp32Board

NAME = "esp32_c3"


class Board(Esp32Board):
    LED = 8
    SENSORS = ("internal", "dht22", "ds18b20")
