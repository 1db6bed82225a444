# The board interface: what the firmware (app.py, session.py) calls on a board, said once. A board file
# boards/<name>.py (flashed as /board.py) defines NAME and a class Board(cfg) offering all of it. Hardware
# stays behind it: only board and sensor files import machine, network, esp32 or a sensor driver.
#
#   Board(cfg)           checks what cfg asks of this board: ValueError or OSError naming the key if it cannot
#   network_up(tick)     join the network, or return at once if it is up; call tick() while waiting; OSError
#                        (one line: what failed, and why) if it cannot
#   sync_time()          set the clock (NTP); True once it is set. False: ts stays null, tried again later
#   read_sensor()        the sensor's fields, e.g. {"temp_c": 21.4}; any exception is a failed read
#   led(on)              the status LED: on after a reading was acknowledged, off while waiting
#   reset_cause()        why the board started: power_on, hard, watchdog, deep_sleep, soft, brownout, other
#   watchdog(timeout_s)  arm the hardware watchdog; True if armed, False if the board has none
#   feed()               feed it: every pass of the loop and every 250 ms of any wait
#   rssi()               the Wi-Fi signal in dBm (a health field); None while not joined, or with no Wi-Fi
#   deepsleep(ms)        battery mode (config deep_sleep): off until ms from now, then a boot with reset cause
#                        deep_sleep and the RTC's time kept. Optional: a board without it refuses deep_sleep
#
# Sensors: one module per driver, boards/_sensor_<name>.py, whose Sensor(cfg) has read() -> dict of fields.
# A board's SENSORS names the ones it offers, its default first; sensor() imports the configured one only,
# so the others cost no RAM ('sensorpub flash' copies all of them). A board sets
# self.read_sensor = sensor(...).read: no method of its own for it.
# No base class with defaults: every board would keep in RAM the ones it overrides. The unix board does
# not even import this module (each module costs RAM, and its 64 KB memory test has none to spare): it
# repeats the five lines of sensor().


def sensor(cfg, names, who="this board"):
    # the configured sensor's driver: Sensor(cfg) of boards/_sensor_<name>.py
    kind = cfg["sensor"]
    if kind == "default":
        kind = names[0]
    if kind not in names:
        raise ValueError("config key 'sensor' is '%s': %s has %s" % (kind, who, ", ".join(names)))
    return __import__("_sensor_" + kind).Sensor(cfg)
