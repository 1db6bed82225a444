"""The real Mosquitto: mTLS, identity as username, ACL, CRL, clear start-up errors."""
import json
import socket
import ssl
import time

import pytest

from helpers import Collector, client_for
from host_tools import pki
from host_tools.broker import Broker
from host_tools.errors import CommandError


def reading(dev, seq, **extra):
    msg = {"device_id": dev, "seq": seq, "ts": time.time(), "status": "ok", "temp_c": 21.5}
    msg.update(extra)
    return json.dumps(msg)


def test_device_reaches_verifier_over_mtls(broker, fleet):
    sub = client_for(fleet, "verifier", broker.port)
    col = Collector(sub, "devices/#")
    dev = client_for(fleet, "dev1", broker.port)
    dev.publish("devices/dev1/telemetry", reading("dev1", 1), qos=1).wait_for_publish(5)
    msgs = col.wait_for(1)
    assert msgs[0][0] == "devices/dev1/telemetry"
    assert json.loads(msgs[0][1])["seq"] == 1
    log = broker.log_file.read_text()
    assert "u'dev1'" in log  # the CN became the username


def test_acl_blocks_publishing_on_another_devices_topic(broker, fleet):
    sub = client_for(fleet, "verifier", broker.port)
    col = Collector(sub, "devices/#")
    dev1 = client_for(fleet, "dev1", broker.port)
    dev1.publish("devices/dev2/telemetry", reading("dev2", 1), qos=1).wait_for_publish(5)
    dev1.publish("devices/dev1/telemetry", reading("dev1", 7), qos=1).wait_for_publish(5)  # marker
    msgs = col.wait_for(1)
    time.sleep(0.5)
    topics = [t for t, _ in col.messages]
    assert topics == ["devices/dev1/telemetry"], topics


def test_device_cannot_read_other_devices(broker, fleet):
    spy = client_for(fleet, "dev2", broker.port)
    col = Collector(spy, "devices/#")
    dev1 = client_for(fleet, "dev1", broker.port)
    dev1.publish("devices/dev1/telemetry", reading("dev1", 1), qos=1).wait_for_publish(5)
    time.sleep(0.7)
    assert col.messages == []


def test_certificate_from_another_ca_is_refused(broker, fleet):
    pki.init_ca("rogue")
    pki.issue_device("rogue", "dev1")
    rogue = pki.Fleet("rogue")
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        client_for(rogue, "dev1", broker.port, ca_file=fleet.ca_cert)


def test_client_without_certificate_is_refused(broker, fleet):
    ctx = ssl.create_default_context(cafile=str(fleet.ca_cert))
    with socket.create_connection(("localhost", broker.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
                if not s.recv(4):
                    raise ConnectionResetError("closed")


def test_revoked_device_is_refused_after_restart(fleet):
    pki.revoke_device("demo", "dev2")
    from conftest import free_port
    b = Broker("demo", port=free_port())
    b.start()
    try:
        client_for(fleet, "dev1", b.port).disconnect()
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            client_for(fleet, "dev2", b.port)
    finally:
        b.stop()


def test_port_in_use_is_one_clear_error(fleet):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(CommandError, match="already in use"):
            Broker("demo", port=s.getsockname()[1]).start()


def test_missing_server_certificate_is_one_clear_error(home):
    pki.init_ca("demo")
    with pytest.raises(CommandError, match="pki server"):
        Broker("demo", port=18999).start()


def test_missing_mosquitto_is_one_clear_error(fleet, monkeypatch):
    monkeypatch.setenv("SENSORPUB_MOSQUITTO", "/nonexistent/mosquitto")
    with pytest.raises(CommandError, match="not an executable"):
        Broker("demo", port=18998).start()


def test_stop_ends_the_process(fleet):
    from conftest import free_port
    b = Broker("demo", port=free_port())
    pid = b.start()
    assert b.pid() == pid
    assert b.stop() is True
    assert b.pid() is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", b.port), timeout=1)
