# Simulated sensor for the unix board: temperature and humidity, deterministic from config "seed".
class Sensor:
    FAIL_EVERY = 0  # _sensor_sim_faulty.py: every Nth read fails

    def __init__(self, cfg):
        self.x = cfg["seed"] & 0x7FFFFFFF
        self.n = 0

    def read(self):
        self.n += 1
        if self.FAIL_EVERY and self.n % self.FAIL_EVERY == 0:
            raise OSError("sim sensor: no response")
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return {"temp_c": round(18 + (self.x % 1000) / 100, 2), "humidity_pct": round(40 + (self.x // 1000 % 2000) / 100, 2)}
