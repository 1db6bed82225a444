# Virtual board for the Unix port: no Wi-Fi step, host clock, a simulated sensor whose values are
# deterministic from config "seed". sensor "sim" (default) or "sim_faulty" (every 4th read fails).
NAME = "unix"


class Board:
    def __init__(self, cfg):
        kind = cfg["sensor"]
        if kind not in ("default", "sim", "sim_faulty"):
            raise ValueError("config key 'sensor' is '%s': the unix board has sim, sim_faulty" % kind)
        self.faulty = kind == "sim_faulty"
        self.x = cfg["seed"] & 0x7FFFFFFF
        self.n = 0

    def reset_cause(self):
        try:
            import machine  # the virtual board's machine; the bare Unix port has none
            return {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}.get(machine.reset_cause(), "other")
        except (ImportError, AttributeError):
            return "power_on"

    def watchdog(self, timeout_s):
        return False  # the Unix port has no machine.WDT: nothing to arm

    def feed(self):
        pass

    def network_up(self, tick=None):
        pass  # the host's network is always up

    def sync_time(self):
        return True  # the Unix port's clock is the host's, already NTP-synced

    def read_sensor(self):
        self.n += 1
        if self.faulty and self.n % 4 == 0:
            raise OSError("sim sensor: no response")
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return {"temp_c": round(18 + (self.x % 1000) / 100, 2), "humidity_pct": round(40 + (self.x // 1000 % 2000) / 100, 2)}

    def led(self, on):
        pass
