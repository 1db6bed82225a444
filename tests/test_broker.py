"""The real Mosquitto: mTLS, identity as username, ACL, CRL, clear start-up errors."""
import json
import os
import pwd
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from helpers import Collector, client_for
from host_tools import crl, pki
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
    # the broker handles one client's publishes in order and forwards them in order: once the marker is
    # here, the refused one would be here before it
    topics = [t for t, _ in col.wait_for(1)]
    assert topics == ["devices/dev1/telemetry"], topics


def test_device_cannot_read_other_devices(broker, fleet):
    spy = client_for(fleet, "dev2", broker.port)
    col = Collector(spy, "devices/#")
    control = Collector(client_for(fleet, "verifier", broker.port), "devices/#")  # same set-up, allowed to read
    dev1 = client_for(fleet, "dev1", broker.port)
    for seq in range(3):
        dev1.publish("devices/dev1/telemetry", reading("dev1", seq), qos=1).wait_for_publish(5)
    assert len(control.wait_for(3)) == 3  # positive control: the readings were delivered to a reader
    assert col.wait_for(1, timeout=0.5) == []  # a subscriber of the same broker gets them in well under that


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
    crl.revoke_device("demo", "dev2")
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


# --- identity, limits and TLS policy of the generated config (issue 10) -------------------------

def _events(client):
    gone = threading.Event()
    client.on_disconnect = lambda *a: gone.set()
    return gone


def test_a_device_cannot_take_over_another_client_id(broker, fleet):
    # without use_username_as_clientid, dev2 connecting as 'dev1' kicks dev1 off and takes its session
    dev1 = client_for(fleet, "dev1", broker.port, client_id="dev1")
    verifier = client_for(fleet, "verifier", broker.port, client_id="sensorpub-verifier")
    gone1, gone_v = _events(dev1), _events(verifier)
    for stolen in ("dev1", "sensorpub-verifier"):
        client_for(fleet, "dev2", broker.port, client_id=stolen).disconnect()
    dev1.publish("devices/dev1/telemetry", reading("dev1", 1), qos=1).wait_for_publish(5)  # PUBACK: still on
    assert not gone1.is_set() and not gone_v.is_set()
    log = broker.log_file.read_text()
    assert log.count(" as dev2 ") == 2 and log.count(" as dev1 ") == 1, log


def test_two_verifier_identities_consume_at_once(broker, fleet):
    # one identity = one client id; a second consumer gets its own identity, and the running broker's ACL
    # picks it up on reload (what 'pki verifier --name' does)
    pki.issue_verifier("demo", name="bridge")
    assert broker.reload()
    cols = [Collector(client_for(fleet, who, broker.port), "devices/+/telemetry")
            for who in ("verifier", "verifier:bridge")]
    client_for(fleet, "dev1", broker.port).publish("devices/dev1/telemetry", reading("dev1", 3), qos=1)
    assert all(len(c.wait_for(1)) == 1 for c in cols)


def test_acl_grants_devices_exactly_their_two_topics_their_config_and_cert():
    from host_tools.mosquitto_conf import default_acl
    acl = default_acl(["sensorpub-verifier", "sensorpub-verifier-bridge"])
    patterns = sorted(ln.split(" ", 1)[1] for ln in acl.splitlines() if ln.startswith("pattern"))
    assert patterns == ["read devices/%u/cert", "read devices/%u/config", "write devices/%u/status",
                        "write devices/%u/telemetry"]
    assert "#" not in acl.replace("# generated", "")
    assert acl.count("user sensorpub-verifier") == 2
    assert acl.count("topic readwrite devices/+/config") == 2  # each verifier identity is the operator
    assert acl.count("topic readwrite devices/+/cert") == 2


def test_the_aws_standin_acl_grants_devices_the_same_topics():
    """The policies rendered as an ACL (aws/policies.py) and the local ACL agree on what a device may do."""
    from host_tools.aws import standin_acl
    from host_tools.mosquitto_conf import default_acl
    assert [ln for ln in standin_acl().splitlines() if ln.startswith("pattern")] == \
        sorted(ln for ln in default_acl().splitlines() if ln.startswith("pattern"))


# --- remote config topics: the real broker, with the local ACL and with the one rendered from the AWS policies

@pytest.fixture(params=["local-acl", "aws-policy-acl"])
def config_broker(request, fleet):
    from conftest import free_port
    from host_tools.aws import standin_acl
    b = Broker("demo", port=free_port(), acl=standin_acl() if request.param == "aws-policy-acl" else None,
               bind_client_id=request.param == "local-acl")
    b.start()
    yield b
    b.stop()


def _doc(version, **keys):
    return json.dumps({"version": version, "set": keys})


@pytest.mark.parametrize("leaf", ["config", "cert"])
def test_a_device_receives_its_own_retained_config_or_cert(config_broker, fleet, leaf):
    op = client_for(fleet, "verifier", config_broker.port)
    op.publish(f"devices/dev1/{leaf}", _doc(1, interval_s=60), qos=1, retain=True).wait_for_publish(5)
    col = Collector(client_for(fleet, "dev1", config_broker.port), f"devices/dev1/{leaf}")
    assert col.wait_for(1) == [(f"devices/dev1/{leaf}", _doc(1, interval_s=60).encode())]


@pytest.mark.parametrize("leaf", ["config", "cert"])
@pytest.mark.parametrize("writer", ["dev2", "dev1"])
def test_only_the_verifier_writes_a_config_or_cert(config_broker, fleet, writer, leaf):
    # dev2 may not write dev1's config or certificate topic, nor dev1 its own. Each writer then publishes its own
    # status as a marker: the broker forwards one client's publishes in order, so a write it let through would
    # be here before the marker.
    sub = client_for(fleet, "verifier", config_broker.port)
    col = Collector(sub, "devices/+/+")
    dev = client_for(fleet, writer, config_broker.port)
    dev.publish(f"devices/dev1/{leaf}", _doc(9, interval_s=7), qos=1, retain=True).wait_for_publish(5)
    dev.publish(f"devices/{writer}/status", b"marker", qos=1, retain=True).wait_for_publish(5)
    assert col.wait_for(1) == [(f"devices/{writer}/status", b"marker")], col.messages
    # nothing retained either: one SUBSCRIBE sends the retained messages filter by filter, dev1's topic first
    sub.subscribe([(f"devices/dev1/{leaf}", 1), (f"devices/{writer}/status", 1)])
    assert col.wait_for(2)[1:] == [(f"devices/{writer}/status", b"marker")], col.messages
    # positive control: the verifier's own write arrives at the same subscriber
    sub.publish(f"devices/dev1/{leaf}", _doc(1, interval_s=60), qos=1, retain=True).wait_for_publish(5)
    assert col.wait_for(3)[2:] == [(f"devices/dev1/{leaf}", _doc(1, interval_s=60).encode())], col.messages


@pytest.mark.parametrize("leaf", ["config", "cert"])
def test_a_device_does_not_receive_another_devices_config_or_cert(config_broker, fleet, leaf):
    col = Collector(client_for(fleet, "dev1", config_broker.port), f"devices/+/{leaf}")
    op = client_for(fleet, "verifier", config_broker.port)
    op.publish(f"devices/dev2/{leaf}", _doc(1, interval_s=5), qos=1, retain=True).wait_for_publish(5)
    op.publish(f"devices/dev1/{leaf}", _doc(1, interval_s=60), qos=1, retain=True).wait_for_publish(5)
    # in order from one publisher: dev2's would be here before dev1's own (the positive control)
    assert col.wait_for(1) == [(f"devices/dev1/{leaf}", _doc(1, interval_s=60).encode())], col.messages
    # nor as a retained message on a new subscription: filter by filter, dev2's first, then dev1's own
    late = Collector(client_for(fleet, "dev1", config_broker.port), [(f"devices/dev2/{leaf}", 1),
                                                                     (f"devices/dev1/{leaf}", 1)])
    assert late.wait_for(1) == [(f"devices/dev1/{leaf}", _doc(1, interval_s=60).encode())], late.messages


def test_oversized_packet_is_refused_and_the_sender_dropped(broker, fleet):
    col = Collector(client_for(fleet, "verifier", broker.port), "devices/+/status")
    dev1 = client_for(fleet, "dev1", broker.port)
    gone = _events(dev1)
    dev1.publish("devices/dev1/status", b"x" * (32 << 10), qos=1, retain=True)
    assert gone.wait(10)
    ok = client_for(fleet, "dev1", broker.port)
    ok.publish("devices/dev1/status", b"online", qos=1, retain=True).wait_for_publish(5)
    assert [p for _, p in col.wait_for(1)] == [b"online"]


def _s_client(port, fleet, *args):
    v = fleet.verifier_dir
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(fleet.ca_cert),
                        "-cert", str(v / "verifier.pem"), "-key", str(v / "verifier.key.pem"), *args],
                       input="", capture_output=True, text=True, timeout=20)
    return r.stdout + r.stderr


@pytest.mark.parametrize("args, refused", [
    (["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], "alert protocol version"),
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"], "alert handshake failure"),   # SHA-1 CBC
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"], "alert handshake failure"),            # CBC
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], None),
    (["-tls1_3"], None),
])
def test_tls_versions_and_suites_are_set_by_the_config(broker, fleet, args, refused):
    out = _s_client(broker.port, fleet, *args)
    if refused:
        assert refused in out and "Cipher is (NONE)" in out, out
    else:
        assert "Cipher is (NONE)" not in out and ("GCM" in out or "CHACHA" in out), out


def test_broker_runs_unprivileged_and_keeps_its_files_private(broker):
    uid = int(next(ln for ln in open(f"/proc/{broker.pid()}/status") if ln.startswith("Uid:")).split()[1])
    assert uid == (pwd.getpwnam("mosquitto").pw_uid if os.geteuid() == 0 else os.geteuid())
    assert broker.dir.stat().st_mode & 0o777 == 0o700
    for p in broker.tls_dir.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600 and p.stat().st_uid == uid, p


def test_home_closed_to_the_broker_user_is_one_clear_error(fleet, home):
    if os.geteuid() != 0:
        pytest.skip("only a broker started by root drops to another user")  # the rest of this file covers non-root
    os.chmod(home, 0o700)
    with pytest.raises(CommandError, match=r"closed to the 'mosquitto' user .*chmod o\+x"):
        Broker("demo", port=18997).start()


def test_killed_broker_leaves_no_stale_pid_and_its_log_is_kept(fleet):
    from conftest import free_port
    b = Broker("demo", port=free_port())
    pid = b.start()
    os.kill(pid, signal.SIGKILL)  # from outside: the pid file stays behind
    assert b.pid_file.exists()
    deadline = time.monotonic() + 10
    while b.pid() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.pid() is None
    b.start()
    try:
        assert "mosquitto version" in b.log_file.with_name("mosquitto.log.1").read_text()
    finally:
        b.stop()


@pytest.mark.parametrize("bind, message", [("nonsense.invalid", "is not an address"),
                                           ("192.0.2.7", "must be an address of this machine")])
def test_bad_bind_address_says_so(fleet, bind, message):
    with pytest.raises(CommandError, match=message):
        Broker("demo", port=18996, bind=bind).start()


def test_revoke_reaches_a_running_broker(broker, fleet):
    client_for(fleet, "dev2", broker.port).disconnect()
    from conftest import run_cli
    r = run_cli("pki", "revoke", "dev2", "--fleet", "demo")
    assert r.returncode == 0 and "reloaded" in r.stderr + r.stdout, r.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client_for(fleet, "dev2", broker.port).disconnect()
        except (ConnectionError, ssl.SSLError, OSError):
            break
        time.sleep(0.1)
    else:
        pytest.fail("dev2 still connects after revoke")
    client_for(fleet, "dev1", broker.port).disconnect()


def test_later_commands_use_the_port_the_broker_was_started_on(fleet):
    from conftest import free_port, run_cli
    from host_tools import target
    port = free_port()
    assert run_cli("broker", "start", "--port", str(port)).returncode == 0
    try:
        r = run_cli("verify", "--timeout", "0.5")
        assert f"verifying on localhost:{port} " in r.stderr, r.stderr
        assert target.resolve("demo").port == port  # flash resolves the same way
        assert target.resolve("demo", port=8884).port == 8884  # an explicit port wins
    finally:
        run_cli("broker", "stop")
    assert target.resolve("nofleet").port == 8883  # never started: the default
