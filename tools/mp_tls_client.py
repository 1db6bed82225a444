# Run by tools/bench_tls.py under the Unix-port MicroPython: CONNECT then N QoS 1 PUBLISHes, either
# through sensorpub's session layer or with umqtt.simple given the SSLContext directly (the reference).
# argv: MODE(session|bare) FIRMWARE_DIR UMQTT_DIR CERT_DIR PORT N
import sys

mode, fw, lib, certs, port, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
sys.path[:0] = [fw, lib]
import time

import creds

creds.DIR = certs  # the firmware's own loader, pointed at the host's copy of the DER files
ctx = creds.context()[0]
msg = b'{"device_id":"dev1","seq":1,"ts":1795459200.123,"uptime_s":12,"status":"ok","temp_c":21.4}'
if mode == "session":
    import session
    cfg = {"client_id": "dev1", "broker_host": "localhost", "broker_port": port, "keepalive_s": 60, "wdt_s": 0, "probe_s": 0,
           "connect_timeout_s": 5, "interval_s": 30, "puback_timeout_s": 5, "backoff_base_s": 1, "backoff_cap_s": 4}
    s = session.Session(cfg, ctx, "devices/dev1/status")
    t = time.ticks_us()
    assert s.connect()  # CONNECT, CONNACK, and the retained 'online' PUBLISH + PUBACK
    c_us = time.ticks_diff(time.ticks_us(), t)
    t = time.ticks_us()
    for _ in range(n):
        assert s.publish("devices/dev1/telemetry", msg)
    p_us = time.ticks_diff(time.ticks_us(), t)
    s.close(disconnect=True)
else:
    from umqtt.simple import MQTTClient
    c = MQTTClient("dev1", "localhost", port=port, keepalive=60, ssl=ctx)
    c.set_last_will("devices/dev1/status", b"offline", retain=True, qos=1)
    t = time.ticks_us()
    c.connect()
    c.publish("devices/dev1/status", b"online", True, 1)
    c_us = time.ticks_diff(time.ticks_us(), t)
    t = time.ticks_us()
    for _ in range(n):
        c.publish("devices/dev1/telemetry", msg, False, 1)
    p_us = time.ticks_diff(time.ticks_us(), t)
    c.disconnect()
print("RESULT", c_us, p_us)
