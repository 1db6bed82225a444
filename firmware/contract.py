# The device-host contract, device side: topics, port, the reading, the status document, the files on the
# board. host_tools/contract.py states the same for the host; tests/test_contract.py checks they agree.
# Plain constants only (no const(): other modules import them), so CPython can load it too.
ROOT = "devices"              # default topic_prefix: <prefix>/<device_id>/<leaf>
TELEMETRY_LEAF = "telemetry"  # the readings, QoS 1
STATUS_LEAF = "status"        # the retained status document, and the Last Will
DEFAULT_PORT = 8883           # default broker_port: MQTT over TLS

# the reading: these fields first and in this order (the outbox stores a reading without its first two),
# then the sensor's own; ERROR_FIELD only with STATUS_SENSOR_ERROR
READING_FIELDS = ("device_id", "seq", "ts", "uptime_s", "status")
ERROR_FIELD = "error"
STATUS_OK = "ok"
STATUS_SENSOR_ERROR = "sensor_error"

# the status document: online with the reset cause after each CONNECT, offline as the Last Will (lost) or
# on a planned stop (stopped)
STATUS_ONLINE = '{"state":"online","reset":"%s"}'
STATUS_LOST = b'{"state":"offline","reason":"lost"}'
STATUS_STOPPED = b'{"state":"offline","reason":"stopped"}'

# files 'sensorpub flash' writes
CONFIG_PATH = "/config.json"
CERT_DIR = "/certs"
CERT_FILE = "client.der"      # the device certificate
KEY_FILE = "client.key.der"   # its private key
CA_FILE = "ca.der"            # the CA the broker's certificate must chain to
