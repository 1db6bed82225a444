# Shared by the ESP32 board files: Wi-Fi with a timeout, NTP, status LED, reset cause, watchdog; the sensors
# are boards/_sensor_*.py. The interface it implements: _board.py.
import time

import machine
import network
from machine import Pin

import log
from _board import sensor

if False:  # type checker only
    from typing import Any


# wlan.status() values that mean joining has failed (ESP32 port); anything else: still trying
_FAILED = {
    getattr(network, "STAT_NO_AP_FOUND", 201): "no access point with that name in range",
    getattr(network, "STAT_WRONG_PASSWORD", 202): "wrong password (check SENSORPUB_WIFI_PASSWORD at flash time)",
    getattr(network, "STAT_ASSOC_FAIL", 203): "association failed",
    getattr(network, "STAT_HANDSHAKE_TIMEOUT", 204): "handshake timeout (wrong password?)",
}


NTP_EVERY_S = 6 * 3600  # battery mode: how old the RTC's last NTP sync may get (its drift: seconds a day)

# machine.reset_cause() values, by the names the ESP32 port exports
_CAUSES = (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"), ("WDT_RESET", "watchdog"),
           ("DEEPSLEEP_RESET", "deep_sleep"), ("SOFT_RESET", "soft"), ("BROWNOUT_RESET", "brownout"))


class Esp32Board:
    LED = 2          # default status LED pin; subclasses override
    SENSORS = ("dht22", "ds18b20", "internal")

    def __init__(self, cfg):
        self.cfg = cfg
        self.read_sensor = sensor(cfg, self.SENSORS).read
        led = cfg["led_pin"] if cfg["led_pin"] >= 0 else self.LED
        self.led_pin = Pin(led, Pin.OUT) if led >= 0 else None
        self.wlan = network.WLAN(network.STA_IF)
        self.joined = False
        self.wdt = None  # type: Any
        self.ntp_due = False  # battery mode: the RTC's time is used, but its last NTP sync is NTP_EVERY_S old

    def reset_cause(self):
        c = machine.reset_cause()
        for name, cause in _CAUSES:
            if getattr(machine, name, None) == c:
                return cause
        return "other"

    def watchdog(self, timeout_s):
        # machine.WDT cannot be stopped once armed, not even by Ctrl-C or a soft reset
        self.wdt = machine.WDT(timeout=timeout_s * 1000)
        return True

    def feed(self):
        if self.wdt:
            self.wdt.feed()

    def network_up(self, tick=None):
        # join the configured access point; tick() is called while waiting (readings stay on schedule)
        if self.wlan.isconnected():
            return
        ssid = self.cfg["wifi_ssid"]
        if not ssid:
            raise OSError("config key 'wifi_ssid' is empty: flash with --wifi-ssid NAME")
        if self.joined:
            log.warn("Wi-Fi '%s' lost (status %s): rejoining" % (ssid, self.wlan.status()))
            self.joined = False
        self.wlan.active(True)
        self.wlan.connect(ssid, self.cfg["wifi_password"])  # the password is never logged
        t0 = time.ticks_ms()
        while not self.wlan.isconnected():
            st = self.wlan.status()
            late = time.ticks_diff(time.ticks_ms(), t0) > self.cfg["wifi_timeout_s"] * 1000
            if st in _FAILED:
                self.wlan.disconnect()
                raise OSError("Wi-Fi '%s' not joined: %s (status %s)" % (ssid, _FAILED[st], st))
            if late:
                self.wlan.disconnect()
                raise OSError("Wi-Fi '%s' not joined within %d s (status %s)" % (ssid, self.cfg["wifi_timeout_s"], st))
            if tick:
                tick()
            time.sleep_ms(100)
        self.joined = True
        log.info("Wi-Fi joined %s as %s, RSSI %s dBm" % (ssid, self.wlan.ifconfig()[0], self.rssi()))
        if self.ntp_due:  # battery mode: the RTC's time, checked against NTP every NTP_EVERY_S
            self._ntp()

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError, TypeError):  # not joined, or a port without it
            return None

    def sync_time(self):
        # NTP. After a deep sleep the RTC has kept the time: it is used as is, and NTP runs again (once Wi-Fi
        # is up: network_up) when the last sync recorded in RTC memory is NTP_EVERY_S old
        if machine.reset_cause() == machine.DEEPSLEEP_RESET and time.gmtime()[0] >= 2025:
            try:
                self.ntp_due = time.time() - int(machine.RTC().memory()) >= NTP_EVERY_S
                return True
            except ValueError:  # no sync recorded: NTP now
                pass
        return self.wlan.isconnected() and self._ntp()  # no NTP without Wi-Fi: tried again before each CONNECT

    def _ntp(self):
        try:
            import ntptime
            ntptime.host = self.cfg["ntp_host"]
            ntptime.settime()
        except Exception:
            return False  # ts stays null (uptime_s is sent) until a later sync works
        machine.RTC().memory(b"%d" % time.time())
        self.ntp_due = False
        return True

    def deepsleep(self, ms):
        # battery mode: the board is off until ms from now, then boots with reset cause deep_sleep
        self.wlan.active(False)
        machine.deepsleep(ms)

    def led(self, on):
        if self.led_pin:
            self.led_pin.value(1 if on else 0)
