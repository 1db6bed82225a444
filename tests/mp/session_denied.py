# Under the Unix-port MicroPython: a broker that hangs up at the first publish of every connection (AWS IoT
# does this when its policy denies the topic). argv: FIRMWARE_DIR UMQTT_DIR CERT_DIR PORT
import sys
import time

fw, lib, certs, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path[:0] = [fw, lib]
import creds
import session

creds.DIR = certs
cfg = {"client_id": "dev1", "broker_host": "localhost", "broker_port": port, "keepalive_s": 60, "wdt_s": 0, "probe_s": 0,
       "connect_timeout_s": 3, "interval_s": 30, "puback_timeout_s": 2, "backoff_base_s": 1, "backoff_cap_s": 1}
s = session.Session(cfg, creds.context()[0], "devices/dev1/status")
t0 = time.time()
while s.attempt < 3 and time.time() - t0 < 20:
    s.publish("devices/dev1/telemetry", b"{}")
    time.sleep(0.1)
print("RESULT", s.attempt)
