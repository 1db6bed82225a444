# Defaults in one place; /config.json on the board overrides what differs.
import json

PATH = "/config.json"

# key: (default, type); a default of None with no fallback below means the key is required
DEFAULTS = {
    "device_id": (None, str),
    "broker_host": (None, str),
    "broker_port": (8883, int),
    "client_id": (None, str),        # defaults to device_id (AWS: the thing name)
    "interval_s": (30, int),
    "topic_prefix": ("devices", str),
    "wifi_ssid": ("", str),
    "wifi_password": ("", str),
    "wifi_timeout_s": (20, int),
    "sensor": ("default", str),      # board-specific: e.g. dht22, ds18b20, internal, sim
    "sensor_pin": (4, int),
    "led_pin": (-1, int),            # -1: the board's default
    "keepalive_s": (60, int),
    "connect_timeout_s": (10, int),
    "puback_timeout_s": (10, int),
    "backoff_base_s": (1, int),
    "backoff_cap_s": (60, int),
    "outbox_slots": (240, int),      # readings kept on flash while the broker is unreachable
    "ntp_host": ("pool.ntp.org", str),
    "seed": (1, int),                # simulated sensors only
    "max_cycles": (0, int),          # 0: forever; tests and benchmarks stop after N readings
}
REQUIRED = ("device_id", "broker_host")


class ConfigError(Exception):
    pass


def load(path=PATH):
    try:
        with open(path) as f:
            user = json.load(f)
    except OSError:
        raise ConfigError(path + " missing: run 'sensorpub flash' on the host to write it")
    except ValueError:
        raise ConfigError(path + " is not valid JSON: fix it or re-run 'sensorpub flash'")
    return validate(user, path)


def validate(user, path=PATH):
    # also run on the host by 'sensorpub flash', so a bad config never reaches a board
    if not isinstance(user, dict):
        raise ConfigError(path + " must hold a JSON object")
    cfg = {}  # type: dict
    for k in DEFAULTS:
        cfg[k] = DEFAULTS[k][0]
    for k in user:
        if k not in DEFAULTS:
            raise ConfigError("unknown key '%s' in %s: remove it (known: see firmware/config.py)" % (k, path))
        v, want = user[k], DEFAULTS[k][1]
        if type(v) is not want:  # bool is not int here, on purpose
            raise ConfigError("key '%s' in %s must be %s, got %s" % (k, path, want.__name__, type(v).__name__))
        cfg[k] = v
    for k in REQUIRED:
        if not cfg[k]:
            raise ConfigError("required key '%s' missing in %s" % (k, path))
    for k in ("interval_s", "keepalive_s", "connect_timeout_s", "puback_timeout_s", "backoff_base_s",
              "backoff_cap_s", "outbox_slots"):
        if cfg[k] < (0 if k == "interval_s" else 1):
            raise ConfigError("key '%s' in %s must be positive" % (k, path))
    if not 0 < cfg["broker_port"] < 65536:
        raise ConfigError("key 'broker_port' in %s must be 1-65535" % path)
    if cfg["client_id"] is None:
        cfg["client_id"] = cfg["device_id"]
    return cfg
