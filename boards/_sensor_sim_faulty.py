# The simulated sensor failing every 4th read ("sim sensor: no response"): the sensor_error path.
from _sensor_sim import Sensor as _Sim


class Sensor(_Sim):
    FAIL_EVERY = 4
