# Defaults in one place; /config.json on the board overrides what differs.
import json

from contract import CONFIG_PATH as PATH, DEFAULT_PORT, ROOT

# key: (default, type); a default of None with no fallback below means the key is required
DEFAULTS = {
    "device_id": (None, str),
    "broker_host": (None, str),
    "broker_port": (DEFAULT_PORT, int),
    "client_id": (None, str),        # defaults to device_id (AWS: the thing name)
    "interval_s": (30, int),
    "topic_prefix": (ROOT, str),
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
    "probe_s": (3, int),             # backing off from a broker that refused TCP: probe it this often; 0: off
    "outbox_slots": (240, int),      # readings kept on flash while the broker is unreachable
    "ntp_host": ("pool.ntp.org", str),
    "seed": (1, int),                # simulated sensors only
    "max_cycles": (0, int),          # 0: forever; tests and benchmarks stop after N readings
    "wdt_s": (60, int),              # hardware watchdog timeout; 0: off. It keeps running at the REPL
    "health_every": (10, int),       # every Nth reading carries the health fields; 0: never
    "deep_sleep": (False, bool),     # battery mode: one reading per wake, machine.deepsleep() in between
    "publish_every": (1, int),       # battery mode: connect every Nth wake and send what is queued
}
# allowed range of every numeric key (inclusive)
BOUNDS = {
    "broker_port": (1, 65535),
    "interval_s": (0, 86400),        # 0 (back to back) only with max_cycles: benchmarks
    "wifi_timeout_s": (1, 300),
    "sensor_pin": (0, 48),
    "led_pin": (-1, 48),
    "keepalive_s": (2, 65535),       # MQTT's keepalive field is 16 bits
    "connect_timeout_s": (1, 120),
    "puback_timeout_s": (1, 120),
    "backoff_base_s": (1, 3600),
    "backoff_cap_s": (1, 86400),
    "probe_s": (0, 3600),
    "outbox_slots": (1, 4096),       # 256 bytes of flash each
    "seed": (0, 0x7FFFFFFF),
    "max_cycles": (0, 1000000000),
    "wdt_s": (0, 3600),
    "health_every": (0, 1000000),
    "publish_every": (1, 1000),
}
REQUIRED = ("device_id", "broker_host")
# remote config (<prefix>/<id>/config): the keys a device applies at run time; NEVER_REMOTE ones are refused
# with a line saying so (who the device is and where it connects change only with 'sensorpub flash'), and
# any other key is refused as needing a re-flash
REMOTE = ("interval_s", "health_every", "keepalive_s", "puback_timeout_s", "backoff_base_s", "backoff_cap_s",
          "probe_s", "deep_sleep", "publish_every")
NEVER_REMOTE = ("device_id", "client_id", "broker_host", "broker_port", "topic_prefix", "wifi_ssid",
                "wifi_password", "ntp_host")


class ConfigError(ValueError):  # a ValueError, so a caller can drop this module once loaded
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
    cfg = dict.fromkeys(DEFAULTS)  # type: dict  # sized once for every key: a grown table holds ~half empty slots
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
    for k in BOUNDS:
        lo, hi = BOUNDS[k]
        if not lo <= cfg[k] <= hi:
            raise ConfigError("key '%s' in %s is %d: allowed %d to %d" % (k, path, cfg[k], lo, hi))
    if cfg["interval_s"] == 0 and not cfg["max_cycles"]:
        raise ConfigError("key 'interval_s' in %s is 0: allowed 1 to 86400 (0 only with max_cycles)" % path)
    if cfg["deep_sleep"] and cfg["publish_every"] > cfg["outbox_slots"]:
        raise ConfigError("key 'publish_every' in %s is %d: the outbox holds %d readings: raise outbox_slots"
                          % (path, cfg["publish_every"], cfg["outbox_slots"]))
    if cfg["backoff_cap_s"] < cfg["backoff_base_s"]:
        raise ConfigError("key 'backoff_cap_s' in %s is below backoff_base_s: raise it" % path)
    low = 2 * cfg["connect_timeout_s"] + 15  # a TCP connect and a TLS handshake back to back, and DNS
    if cfg["wdt_s"] and cfg["wdt_s"] < low:
        raise ConfigError("key 'wdt_s' in %s is %d: with connect_timeout_s %d it must be 0 (off) or at least %d"
                          % (path, cfg["wdt_s"], cfg["connect_timeout_s"], low))
    if cfg["client_id"] is None:
        cfg["client_id"] = cfg["device_id"]
    return cfg
