# The device-host contract, device side: topics, port, the reading, the status document, the files on the
# board. host_tools/contract.py states the same for the host; tests/test_contract.py checks they agree.
# Plain constants only (no const(): other modules import them), so CPython can load it too.
ROOT = "devices"              # default topic_prefix: <prefix>/<device_id>/<leaf>
TELEMETRY_LEAF = "telemetry"  # the readings, QoS 1
STATUS_LEAF = "status"        # the retained status document, and the Last Will
CONFIG_LEAF = "config"        # the retained remote config: the device reads its own, never writes it
CONFIG_DOC = ("version", "set")  # the remote config document: {"version": N >= 1, "set": {config key: value}}
CERT_LEAF = "cert"            # a renewed certificate (DER, retained) for the device's own key: it reads its own
DEFAULT_PORT = 8883           # default broker_port: MQTT over TLS

# the reading: these fields first and in this order (the outbox stores a reading without its first two),
# then the sensor's own; ERROR_FIELD only with STATUS_SENSOR_ERROR
READING_FIELDS = ("device_id", "seq", "ts", "uptime_s", "status")
ERROR_FIELD = "error"
STATUS_OK = "ok"
STATUS_SENSOR_ERROR = "sensor_error"

# health: every health_every-th reading also carries these (numbers; rssi only with Wi-Fi, cert_days only
# once the clock is set)
HEALTH_FIELDS = ("heap_free", "rssi", "reconnects", "queued", "cert_days")

# the status document: online after each CONNECT with the reset cause, firmware version, board,
# MicroPython version, boot count, the serial number (lowercase hex) of the client certificate in use and the
# remote config version in use (0: none); the last %s is empty, or holds ',"refused":{"version":N,"key":K,
# "reason":R}' for a remote config the device refused and/or ',"cert_refused":{"serial":S,"reason":R}' for a
# pushed certificate it refused (then the config's). Offline as the Last Will (lost), on a planned stop
# (stopped) or before a deep sleep (sleeping)
STATUS_ONLINE = ('{"state":"online","reset":"%s","fw":"%s","board":"%s","mp":"%s","boots":%d,"cert":"%s",'
                 '"config":%s%s}')
STATUS_TAIL = ',"cert":'      # where the part of STATUS_ONLINE that changes at run time starts
FW_VERSION = "0.2.0"          # this firmware's version: the host package's own (sensorpub --version)
STATUS_REFUSED = ',"refused":{"version":%d,"key":%s,"reason":%s}'  # the key and reason as JSON strings
STATUS_CERT_REFUSED = ',"cert_refused":{"serial":"%s","reason":%s}'  # the reason as a JSON string
STATUS_LOST = b'{"state":"offline","reason":"lost"}'
STATUS_STOPPED = b'{"state":"offline","reason":"stopped"}'
STATUS_SLEEPING = b'{"state":"offline","reason":"sleeping"}'  # battery mode: sent before each deep sleep

# files 'sensorpub flash' writes
CONFIG_PATH = "/config.json"
REMOTE_PATH = "/remote.json"  # the remote config in use ({"version": N, "set": {...}}), written by the device
CERT_DIR = "/certs"
CERT_FILE = "client.der"      # the device certificate
KEY_FILE = "client.key.der"   # its private key
CA_FILE = "ca.der"            # the CA the broker's certificate must chain to
CERT_NEW = "client.new.der"   # written by the device: a pushed certificate on trial (deleted at boot if left)
