# Under the Unix-port MicroPython: the session layer over a given umqtt.simple keeps publishing QoS 1
# across the client's packet-id limit (umqtt.simple never wraps it itself).
# argv: FIRMWARE_DIR UMQTT_DIR CERT_DIR PORT
import sys

fw, lib, certs, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path[:0] = [fw, lib]
import creds
import session

creds.DIR = certs  # the firmware's own loader, pointed at the host's copy of the DER files
ctx = creds.context()[0]
cfg = {"client_id": "dev1", "broker_host": "localhost", "broker_port": port, "keepalive_s": 60, "wdt_s": 0, "probe_s": 0,
       "connect_timeout_s": 3, "interval_s": 30, "puback_timeout_s": 2, "backoff_base_s": 1, "backoff_cap_s": 2}
s = session.Session(cfg, ctx, "devices/dev1/status")
assert s.connect()
s.c.pid = 65533
ok = [s.publish("devices/dev1/telemetry", b'{"n":%d}' % i) for i in range(4)]
print("RESULT", ok, s.net.made, s.c.pid if s.c else None)  # sockets opened: 1 means no reconnect
