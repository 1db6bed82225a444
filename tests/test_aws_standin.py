"""The AWS-shaped device end to end, against a local Mosquitto standing in for AWS IoT Core.

AWS cannot be reached here. The stand-in differs from the normal local broker the way AWS does:
its server certificate comes from a separate root (standing in for Amazon Root CA 1, which the
device must trust instead of the fleet CA) and its ACL is rendered from the same policy
documents `sensorpub aws` uploads. The board is flashed with `flash --target aws`, the readings
are checked with `verify --target aws`, both through the real CLI.
"""
import re
import ssl
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from board_helpers import Console, mpremote
from conftest import free_port, run_cli
from helpers import Collector, client_for
from host_tools import aws, pki
from host_tools.broker import Broker


@pytest.fixture
def standin(fleet):
    for args in (("pki", "init", "--fleet", "amazon-standin"), ("pki", "server", "--fleet", "amazon-standin")):
        assert run_cli(*args).returncode == 0
    b = Broker("demo", port=free_port())
    r = run_cli("broker", "start", "--port", str(b.port), "--aws-policy", "--server-fleet", "amazon-standin")
    assert r.returncode == 0, r.stderr
    assert (b.dir / "acl").read_text() == aws.standin_acl()
    yield b
    b.stop()


def test_aws_config_delivers_and_the_policy_holds(fleet, standin, vboard, home):
    root = pki.Fleet("amazon-standin").ca_cert
    con = Console(vboard, standin)
    r = run_cli("flash", "--target", "aws", "--port", "vboard:t0", "--device", "dev1", "--board", "unix",
                "--broker-host", "localhost", "--broker-port", str(standin.port), "--aws-root-ca", str(root),
                "--interval", "1", "--set", "backoff_cap_s=4")
    assert r.returncode == 0, r.stderr
    assert f"for localhost:{standin.port}" in r.stdout

    con.expect(r"connected to localhost:\d+ with TLSv1\.[23] .* as dev1", timeout=30)

    r = run_cli("verify", "--target", "aws", "--host", "localhost", "--port", str(standin.port),
                "--aws-root-ca", str(root), "--device", "dev1", "--count", "3", "--timeout", "60")
    assert r.returncode == 0, r.stdout + r.stderr + con.evidence()
    assert re.search(r"dev1 seq=\d+ ok", r.stdout)
    # Mosquitto logs "... as <client id> (..., u'<username = certificate CN>')": the two are the thing name
    assert re.search(r"as dev1 \(.*u'dev1'\)", standin.log_file.read_text()), standin.log_file.read_text()[-2000:]

    # outside the policy: other topics, another device's topics, and any publish by the verifier
    sub = client_for(fleet, "verifier", standin.port, client_id="sensorpub-verifier-t", ca_file=root)
    col = Collector(sub, "devices/#")
    dev = client_for(fleet, "dev2", standin.port, client_id="dev2", ca_file=root)
    for topic in ("devices/dev2/config", "devices/dev1/telemetry", "devices/dev2/telemetry/x", "other/dev2"):
        dev.publish(topic, b'{"forbidden": 1}', qos=1).wait_for_publish(5)
    sub.publish("devices/dev2/telemetry", b'{"forbidden": 2}', qos=1).wait_for_publish(5)
    dev.publish("devices/dev2/telemetry", b'{"allowed": 1}', qos=1).wait_for_publish(5)
    dev.publish("devices/dev2/status", b"online", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not {"devices/dev2/telemetry", "devices/dev2/status"} <= \
            {t for t, _ in col.messages}:
        time.sleep(0.1)
    time.sleep(1)  # anything forbidden would have arrived by now, too
    got = [(t, p) for t, p in col.messages if not t.startswith("devices/dev1/")]
    assert (b'{"allowed": 1}' in [p for t, p in got if t == "devices/dev2/telemetry"]), got
    assert not [p for _, p in col.messages if b"forbidden" in p], col.messages
    for c in (sub, dev):
        c.disconnect()
        c.loop_stop()

    # what went to the board (mpremote stops the running app, so this comes last): the stand-in root
    # as ca.der, and the thing name as client id
    cfg = mpremote(vboard.port, "exec", "print(open('/config.json').read())")
    assert '"client_id": "dev1"' in cfg.stdout, cfg.stdout + cfg.stderr
    der = mpremote(vboard.port, "exec", "import binascii;print(binascii.hexlify(open('/certs/ca.der','rb').read()))")
    assert pki.load_cert(root).public_bytes(Encoding.DER).hex() in der.stdout


def test_fleet_ca_alone_does_not_trust_the_standin(fleet, standin):
    """The device must get the separate root: with the fleet CA as its trust anchor it is refused."""
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        client_for(fleet, "dev1", standin.port, client_id="dev1")
