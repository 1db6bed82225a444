# Virtual board for the Unix port (the interface: _board.py): no Wi-Fi step, no LED, no watchdog, the host's
# clock, and a simulated sensor (_sensor_sim.py): "sim" (default) or "sim_faulty" (every 4th read fails).
NAME = "unix"


class Board:
    SENSORS = ("sim", "sim_faulty")

    def __init__(self, cfg):
        kind = cfg["sensor"]  # _board.sensor(), repeated: importing it costs RAM this board does not have
        if kind == "default":
            kind = self.SENSORS[0]
        if kind not in self.SENSORS:
            raise ValueError("config key 'sensor' is '%s': the unix board has %s" % (kind, ", ".join(self.SENSORS)))
        self.read_sensor = __import__("_sensor_" + kind).Sensor(cfg).read

    def reset_cause(self):
        try:
            import machine  # the virtual board's machine; the bare Unix port has none
            return {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}.get(machine.reset_cause(), "other")
        except (ImportError, AttributeError):
            return "power_on"

    def watchdog(self, timeout_s):
        return False  # the Unix port has no machine.WDT: nothing to arm

    def sync_time(self):
        return True  # the Unix port's clock is the host's, already NTP-synced

    def feed(self, *_):  # also network_up(tick) (the host's network is always up), led(on) and rssi() (there is
        pass             # neither LED nor Wi-Fi)

    network_up = led = rssi = feed
