"""The device-host contract, host side: topics, port, the reading, the status document and the files on
the board, said once for the host tools. The board says the same in firmware/contract.py;
tests/test_contract.py checks that the two agree, fact by fact.
"""

ROOT = "devices"              # topic_prefix default on the board
TELEMETRY_LEAF = "telemetry"  # QoS 1 readings
STATUS_LEAF = "status"        # retained online / offline (and the Last Will)
CONFIG_LEAF = "config"        # retained remote config: the device reads its own; the verifier (operator) writes it
CERT_LEAF = "cert"            # retained renewed certificate (DER) for the device's own key: read and written as config
DEVICE_LEAVES = (TELEMETRY_LEAF, STATUS_LEAF)  # every topic a device writes, nothing else
OPERATOR_LEAVES = (CONFIG_LEAF, CERT_LEAF)     # every topic a device reads (its own only), written by verifiers

TELEMETRY = f"{ROOT}/+/{TELEMETRY_LEAF}"
STATUS = f"{ROOT}/+/{STATUS_LEAF}"

DEFAULT_PORT = 8883           # broker_port default on the board, and the broker's listener: MQTT over TLS

# The reading (JSON on TELEMETRY): these fields first, in this order, then the sensor's values (numbers or
# null); ERROR_FIELD (a string) only with STATUS_SENSOR_ERROR.
READING_FIELDS = ("device_id", "seq", "ts", "uptime_s", "status")
ID_FIELD, SEQ_FIELD, TS_FIELD, UPTIME_FIELD, STATUS_FIELD = READING_FIELDS
ERROR_FIELD = "error"
STATUS_OK = "ok"
STATUS_SENSOR_ERROR = "sensor_error"
STATUSES = (STATUS_OK, STATUS_SENSOR_ERROR)

# Health fields: every `health_every`-th reading (config, default 10; 0 never) also carries these, all numbers:
# free heap bytes, Wi-Fi RSSI in dBm (only on boards with Wi-Fi), reconnects since boot, readings waiting in
# the outbox, whole days until the client certificate expires (absent when the board has no clock).
HEALTH_FIELDS = ("heap_free", "rssi", "reconnects", "queued", "cert_days")
HEAP_FIELD, RSSI_FIELD, RECONNECTS_FIELD, QUEUED_FIELD, CERT_DAYS_FIELD = HEALTH_FIELDS

# The status document (retained JSON on STATUS): after each CONNECT {STATE_KEY: ONLINE, RESET_KEY: <reset cause>,
# FW_KEY: <sensorpub firmware version>, BOARD_KEY: <board module>, MP_KEY: <MicroPython version>, BOOTS_KEY: <boot
# count>, CERT_KEY: <serial of the client certificate in use, lowercase hex>, CONFIG_KEY: <remote config version in
# use, 0: none>} and, after a remote config the device refused, REFUSED_KEY: {VERSION_KEY: N, KEY_KEY: <the key>,
# REASON_KEY: <why>}, after a pushed certificate it refused, CERT_REFUSED_KEY: {SERIAL_KEY: <its serial>,
# REASON_KEY: <why>}; {STATE_KEY: OFFLINE, REASON_KEY: LOST} as the Last Will, REASON_KEY: STOPPED on a planned
# stop, SLEEPING before a deep sleep (battery mode). The device announces it again after each remote config or
# pushed certificate.
STATE_KEY, RESET_KEY, REASON_KEY = "state", "reset", "reason"
FW_KEY, BOARD_KEY, MP_KEY, BOOTS_KEY, CERT_KEY, CONFIG_KEY = "fw", "board", "mp", "boots", "cert", "config"
ONLINE_KEYS = (STATE_KEY, RESET_KEY, FW_KEY, BOARD_KEY, MP_KEY, BOOTS_KEY, CERT_KEY, CONFIG_KEY)
REFUSED_KEY, KEY_KEY = "refused", "key"
CERT_REFUSED_KEY, SERIAL_KEY = "cert_refused", "serial"

# The remote config document (retained JSON on <ROOT>/<id>/CONFIG_LEAF, QoS 1): {VERSION_KEY: N (an int >= 1,
# higher than the last), SET_KEY: {config key: value}}. SET_KEY holds every override (the device applies
# /config.json plus these, so a key left out goes back to its flashed value). Which keys may be set over the air
# is a config fact: REMOTE and NEVER_REMOTE in firmware/config.py (host_tools.flash.firmware_config() reads it).
VERSION_KEY, SET_KEY = "version", "set"
FW_VERSION = "0.2.0"          # the firmware 'sensorpub flash' writes reports this as FW_KEY (= sensorpub --version)
ONLINE, OFFLINE = "online", "offline"
LOST, STOPPED, SLEEPING = "lost", "stopped", "sleeping"  # SLEEPING: battery mode, before each deep sleep

# Files on the board that 'sensorpub flash' writes.
CONFIG_PATH = "/config.json"
REMOTE_PATH = "/remote.json"  # the remote config in use, written by the device itself
CERT_DIR = "/certs"
CERT_FILE = "client.der"      # the device certificate (DER); the same names in certs/<fleet>/devices/<name>/
KEY_FILE = "client.key.der"   # its private key (DER)
CA_FILE = "ca.der"            # the CA the broker's certificate must chain to (DER)
CERT_NEW = "client.new.der"   # written by the device: a pushed certificate on trial (never by the host)
CRED_FILES = (CERT_FILE, KEY_FILE, CA_FILE)


def device_topic(device: str, leaf: str) -> str:
    return f"{ROOT}/{device}/{leaf}"

