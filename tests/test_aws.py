"""`sensorpub aws` against moto's AWS IoT (AWS itself cannot be reached here), through the real CLI."""
import json

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from host_tools import aws, cli, pki
from host_tools.aws import client as awsclient, teardown
from host_tools.errors import CommandError

REGION = "eu-west-1"


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials, no ~/.aws files, no instance metadata; moto computes certificate ids as AWS does."""
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # the tests' own clients (boto3.client) come from one session per test that reads botocore's models through
    # the process's shared loader, as sensorpub's do: a default session parses them again (0.1 s a client)
    # (set inside mock_aws, whose start drops boto3's default session). boto3 and moto are imported here, not at
    # the top: every pytest worker imports this module to collect it (0.36 s each), few run its tests
    import boto3
    from moto import mock_aws
    try:
        with mock_aws(config={"iot": {"use_valid_cert": True}}):
            boto3.setup_default_session(region_name=REGION, botocore_session=awsclient._botocore_session())
            yield _client("iot")
    finally:
        boto3.DEFAULT_SESSION = None


def _client(service):
    import boto3
    return boto3.client(service, region_name=REGION)


def sp(capsys, *args):
    """Run the CLI in-process (moto patches this process); returns (status, stdout, stderr)."""
    capsys.readouterr()
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def account_state(iot):
    """Everything sensorpub can create, as comparable data."""
    certs = {c["certificateId"]: c["status"] for c in iot.list_certificates()["certificates"]}
    things = {t["thingName"]: t.get("attributes", {}) for t in iot.list_things()["things"]}
    policies = {}
    for p in iot.list_policies()["policies"]:
        doc = iot.get_policy(policyName=p["policyName"])["policyDocument"]
        targets = iot.list_targets_for_policy(policyName=p["policyName"])["targets"]
        policies[p["policyName"]] = (json.loads(doc), sorted(targets))
    principals = {t: sorted(iot.list_thing_principals(thingName=t)["principals"]) for t in things}
    return certs, things, policies, principals


def ca_state(iot, fleet):
    ca_id = aws.cert_id(pki.load_cert(fleet.ca_cert))
    try:
        d = iot.describe_ca_certificate(certificateId=ca_id)
        d.pop("ResponseMetadata")
        return d
    except iot.exceptions.ResourceNotFoundException:
        return None


def test_register_ca_makes_it_active_and_rerun_says_so(aws_env, fleet, capsys):
    rc, out, err = sp(capsys, "aws", "register-ca")
    assert rc == 0, err
    d = ca_state(aws_env, fleet)["certificateDescription"]
    assert d["status"] == "ACTIVE"
    assert d["certificatePem"].strip() == fleet.ca_cert.read_text().strip()
    assert "registration code" in err and "ACTIVE" in out

    before = account_state(aws_env)
    rc, out, err = sp(capsys, "aws", "register-ca")
    assert rc == 0, err
    assert "already registered" in out and "nothing changed" in out
    assert account_state(aws_env) == before


def test_verification_certificate_is_signed_by_fleet_ca_with_code_as_cn(aws_env, fleet, capsys):
    seen = {}
    iot = aws.session_client()

    def grab_code(http_response, parsed, **_kw):
        seen["code"] = parsed["registrationCode"]

    def grab_request(params, **_kw):
        seen["request"] = params

    iot.meta.events.register("after-call.iot.GetRegistrationCode", grab_code)
    iot.meta.events.register("before-parameter-build.iot.RegisterCACertificate", grab_request)
    aws.Aws("demo", iot).register_ca()

    ver = x509.load_pem_x509_certificate(seen["request"]["verificationCertificate"].encode())
    ca = pki.load_cert(fleet.ca_cert)
    assert ver.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == seen["code"]
    assert aws.issued_by(ver, ca)
    other_ca = pki.build_ca("other", pki.new_key())
    assert not aws.issued_by(ver, other_ca)
    assert seen["request"]["caCertificate"].strip() == fleet.ca_cert.read_text().strip()
    assert seen["request"]["setAsActive"] is True
    # the verification key exists only in memory: nothing new on disk
    assert not list(fleet.root.rglob("*verification*"))


def test_register_device_end_state_and_rerun_changes_nothing(aws_env, fleet, capsys):
    assert sp(capsys, "aws", "register-ca")[0] == 0
    rc, out, err = sp(capsys, "aws", "register-device", "dev1")
    assert rc == 0, err
    cid = aws.cert_id(pki.load_cert(fleet.device_dir("dev1") / "client.pem"))
    desc = aws_env.describe_certificate(certificateId=cid)["certificateDescription"]
    assert desc["status"] == "ACTIVE"
    by_ca = aws_env.list_certificates_by_ca(caCertificateId=aws.cert_id(pki.load_cert(fleet.ca_cert)))
    assert [c["certificateId"] for c in by_ca["certificates"]] == [cid]  # registered against the fleet CA
    arn = desc["certificateArn"]
    assert aws_env.describe_thing(thingName="dev1")["attributes"] == {"sensorpub_fleet": "demo"}
    assert aws_env.list_thing_principals(thingName="dev1")["principals"] == [arn]
    assert [p["policyName"] for p in aws_env.list_attached_policies(target=arn)["policies"]] == \
        ["sensorpub-demo-device"]

    before = account_state(aws_env)
    rc, out, err = sp(capsys, "aws", "register-device", "dev1")
    assert rc == 0 and "nothing changed" in out
    assert account_state(aws_env) == before

    # a second device shares the one fleet policy
    assert sp(capsys, "aws", "register-device", "dev2")[0] == 0
    assert len(aws_env.list_policies()["policies"]) == 1
    assert len(aws_env.list_targets_for_policy(policyName="sensorpub-demo-device")["targets"]) == 2


def test_device_policy_is_least_privilege(aws_env, fleet, capsys):
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1")
    doc = json.loads(aws_env.get_policy(policyName="sensorpub-demo-device")["policyDocument"])
    prefix = f"arn:aws:iot:{REGION}:123456789012"
    assert doc == aws.device_policy(prefix)
    allowed = {}
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for a in acts:
            assert "*" not in a
            allowed.setdefault(a, set()).update(res)
        for r in res:
            assert "*" not in r, r
    thing = "${iot:Connection.Thing.ThingName}"
    assert allowed == {
        "iot:Connect": {f"{prefix}:client/{thing}"},
        "iot:Publish": {f"{prefix}:topic/devices/{thing}/telemetry", f"{prefix}:topic/devices/{thing}/status"},
        "iot:RetainPublish": {f"{prefix}:topic/devices/{thing}/status"},
        # filters for Subscribe, topics for Receive: its config and pushed certificate only
        "iot:Subscribe": {f"{prefix}:topicfilter/devices/{thing}/config", f"{prefix}:topicfilter/devices/{thing}/cert"},
        "iot:Receive": {f"{prefix}:topic/devices/{thing}/config", f"{prefix}:topic/devices/{thing}/cert"},
    }
    connect = next(s for s in doc["Statement"] if s["Action"] == "iot:Connect")
    assert connect["Condition"]["Bool"] == {"iot:Connection.Thing.IsAttached": "true"}


def test_verifier_gets_a_separate_policy_that_reads_and_writes_only_configs_and_certs(aws_env, fleet, capsys):
    sp(capsys, "aws", "register-ca")
    rc, out, err = sp(capsys, "aws", "register-verifier")
    assert rc == 0, err
    cid = aws.cert_id(pki.load_cert(fleet.verifier_dir / "verifier.pem"))
    arn = aws_env.describe_certificate(certificateId=cid)["certificateDescription"]["certificateArn"]
    assert [p["policyName"] for p in aws_env.list_attached_policies(target=arn)["policies"]] == \
        ["sensorpub-demo-verifier"]
    doc = json.loads(aws_env.get_policy(policyName="sensorpub-demo-verifier")["policyDocument"])
    prefix = f"arn:aws:iot:{REGION}:123456789012"
    allowed = {}
    for st in doc["Statement"]:
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]]):
            allowed.setdefault(a, set()).update(st["Resource"] if isinstance(st["Resource"], list) else
                                                [st["Resource"]])
    assert allowed == {
        "iot:Connect": {f"{prefix}:client/sensorpub-verifier-*"},
        "iot:Subscribe": {f"{prefix}:topicfilter/devices/*"},
        "iot:Receive": {f"{prefix}:topic/devices/*"},
        # the operator: remote configs and pushed certificates only, retained for the device's next connection
        "iot:Publish": {f"{prefix}:topic/devices/*/config", f"{prefix}:topic/devices/*/cert"},
        "iot:RetainPublish": {f"{prefix}:topic/devices/*/config", f"{prefix}:topic/devices/*/cert"},
    }
    assert sp(capsys, "aws", "register-verifier")[1].endswith("(already registered: nothing changed)\n")


def test_endpoint_is_ats(aws_env, fleet, capsys):
    rc, out, _ = sp(capsys, "aws", "endpoint")
    assert rc == 0
    assert out.strip().endswith(f"-ats.iot.{REGION}.amazonaws.com")


def test_jitp_template_and_registration(aws_env, fleet, capsys, tmp_path):
    rc, out, _ = sp(capsys, "aws", "jitp-template")
    t = json.loads(out)
    assert t["Resources"]["policy"]["Properties"]["PolicyName"] == "sensorpub-demo-device"
    assert t["Resources"]["thing"]["Properties"]["ThingName"] == {"Ref": "AWS::IoT::Certificate::CommonName"}
    (tmp_path / "jitp.json").write_text(out)
    role = "arn:aws:iam::123456789012:role/sensorpub-jitp"
    rc, out, err = sp(capsys, "aws", "register-ca", "--jitp", str(tmp_path / "jitp.json"), "--jitp-role", role)
    assert rc == 0, err
    cfg = ca_state(aws_env, fleet)["registrationConfig"]
    assert json.loads(cfg["templateBody"]) == t and cfg["roleArn"] == role
    assert aws_env.get_policy(policyName="sensorpub-demo-device")  # the template names it: it must exist
    before = account_state(aws_env), ca_state(aws_env, fleet)
    assert sp(capsys, "aws", "register-ca", "--jitp", str(tmp_path / "jitp.json"), "--jitp-role", role)[0] == 0
    assert (account_state(aws_env), ca_state(aws_env, fleet)) == before

    rc, _, err = sp(capsys, "aws", "register-ca", "--jitp", str(tmp_path / "jitp.json"))
    assert rc == 1 and "--jitp-role" in err
    (tmp_path / "bad.json").write_text("{not json")
    rc, _, err = sp(capsys, "aws", "register-ca", "--jitp", str(tmp_path / "bad.json"), "--jitp-role", role)
    assert rc == 1 and "bad.json is not valid JSON" in err


def test_teardown_all_leaves_the_account_empty(aws_env, fleet, capsys):
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1", "dev2")
    sp(capsys, "aws", "register-verifier")
    rc, out, err = sp(capsys, "aws", "teardown", "--all", "--yes")
    assert rc == 0, err
    assert "thing dev1" in out and "policy sensorpub-demo-verifier" in out and "fleet CA" in out
    assert account_state(aws_env) == ({}, {}, {}, {})
    assert ca_state(aws_env, fleet) is None
    rc, out, _ = sp(capsys, "aws", "teardown", "--all", "--yes")
    assert rc == 0 and "nothing of fleet 'demo' to delete" in out


def test_teardown_one_device_keeps_the_rest(aws_env, fleet, capsys):
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1", "dev2")
    assert sp(capsys, "aws", "teardown", "dev1", "--yes")[0] == 0
    certs, things, policies, _ = account_state(aws_env)
    assert list(things) == ["dev2"] and len(certs) == 1
    assert len(policies["sensorpub-demo-device"][1]) == 1
    assert ca_state(aws_env, fleet)["certificateDescription"]["status"] == "ACTIVE"
    # and it can be registered again afterwards
    assert sp(capsys, "aws", "register-device", "dev1")[0] == 0


def test_teardown_asks_first(aws_env, fleet, capsys, monkeypatch):
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1")
    before = account_state(aws_env)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    rc, _, err = sp(capsys, "aws", "teardown", "dev1")
    assert rc == 1 and "pass --yes" in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _prompt: "n")
    rc, _, err = sp(capsys, "aws", "teardown", "dev1")
    assert rc == 1 and "nothing deleted" in err
    assert account_state(aws_env) == before
    monkeypatch.setattr("builtins.input", lambda _prompt: "y")
    assert sp(capsys, "aws", "teardown", "dev1")[0] == 0
    assert account_state(aws_env)[1] == {}


def test_reissued_device_certificate_replaces_the_old_one(aws_env, fleet, capsys):
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1")
    old = aws.cert_id(pki.load_cert(fleet.device_dir("dev1") / "client.pem"))
    pki.issue_device("demo", "dev1", force=True)
    rc, _, err = sp(capsys, "aws", "register-device", "dev1")
    assert rc == 0 and "retiring an older certificate" in err
    new = aws.cert_id(pki.load_cert(fleet.device_dir("dev1") / "client.pem"))
    certs, _, _, principals = account_state(aws_env)
    assert certs == {new: "ACTIVE"} and old not in certs
    assert [p.rsplit("/", 1)[1] for p in principals["dev1"]] == [new]


# --- errors users meet ---------------------------------------------------------------------------

def test_register_device_before_ca(aws_env, fleet, capsys):
    rc, out, err = sp(capsys, "aws", "register-device", "dev1")
    assert rc == 1
    assert err.count("\n") == 1 and "not registered in eu-west-1" in err and "aws register-ca" in err


def test_certificate_not_issued_by_the_registered_ca(aws_env, fleet, capsys, home):
    sp(capsys, "aws", "register-ca")
    # dev1's certificate from another CA, as after 'pki init --force' without re-issuing the devices
    pki.init_ca("other")
    pki.issue_device("other", "dev1")
    for f in ("client.pem", "client.key.pem"):
        (fleet.device_dir("dev1") / f).write_bytes((pki.Fleet("other").device_dir("dev1") / f).read_bytes())
    rc, _, err = sp(capsys, "aws", "register-device", "dev1")
    assert rc == 1 and err.count("\n") == 1
    assert "was not issued by the fleet CA" in err and "pki device dev1 --fleet demo --force" in err
    assert account_state(aws_env)[0] == {}  # nothing registered


def test_missing_device_identity(aws_env, fleet, capsys):
    sp(capsys, "aws", "register-ca")
    rc, _, err = sp(capsys, "aws", "register-device", "nosuch")
    assert rc == 1 and "sensorpub pki device nosuch --fleet demo" in err


def test_no_credentials(aws_env, fleet, capsys, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    rc, _, err = sp(capsys, "aws", "endpoint")
    assert rc == 1 and err.count("\n") == 1 and "no AWS credentials" in err and "AWS_PROFILE" in err


def test_no_region_and_wrong_region_and_unknown_profile(aws_env, fleet, capsys, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    rc, _, err = sp(capsys, "aws", "endpoint")
    assert rc == 1 and "no AWS region: pass --region" in err
    rc, _, err = sp(capsys, "aws", "endpoint", "--region", "eu-westt-1")
    assert rc == 1 and "region 'eu-westt-1' has no AWS IoT Core" in err
    rc, _, err = sp(capsys, "aws", "endpoint", "--region", REGION, "--profile", "nosuch")
    assert rc == 1 and "AWS profile 'nosuch'" in err
    # registered in one region, used from another: the message names the region
    assert sp(capsys, "aws", "register-ca", "--region", REGION)[0] == 0
    rc, _, err = sp(capsys, "aws", "register-device", "dev1", "--region", "us-east-1")
    assert rc == 1 and "not registered in us-east-1" in err


def test_ca_registered_by_another_account(aws_env, fleet, capsys):
    a = aws.Aws("demo", aws.session_client())

    def taken(**_kw):
        return _error("ResourceAlreadyExistsException", "The CA certificate is already registered")

    a.client.meta.events.register("before-call.iot.RegisterCACertificate", taken)
    with pytest.raises(CommandError, match="already registered by another AWS account in eu-west-1"):
        a.register_ca()


def test_policy_still_attached_gives_one_line(aws_env, fleet, capsys, monkeypatch):
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1")
    a = aws.Aws("demo", aws.session_client())
    a.client.meta.events.register(
        "before-call.iot.DeletePolicy",
        lambda **_kw: _error("DeleteConflictException", "The policy cannot be deleted as it is attached"))
    monkeypatch.setattr(teardown, "DETACH_WAIT_S", 0)
    with pytest.raises(CommandError, match=r"deleting policy sensorpub-demo-device failed: still attached") as e:
        a.teardown(a.plan_teardown(None))
    assert "\n" not in str(e.value)


def test_delete_waits_while_aws_still_sees_the_attachment(aws_env, fleet, capsys):
    """Detaching is eventually consistent: a delete that conflicts is repeated with back-off, then succeeds."""
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1")
    sleeps, lines, calls = [], [], {"n": 0}
    a = aws.Aws("demo", aws.session_client(), progress=lines.append, sleep=sleeps.append)

    def conflict_twice(**_kw):
        calls["n"] += 1
        return _error("DeleteConflictException", "still attached") if calls["n"] <= 2 else None

    a.client.meta.events.register("before-call.iot.DeletePolicy", conflict_twice)
    a.teardown(a.plan_teardown(None))
    assert calls["n"] == 3 and sleeps == [0.5, 1.0]
    assert sum("AWS still sees an attachment" in ln for ln in lines) == 2
    assert account_state(aws_env) == ({}, {}, {}, {})


# --- throttling: botocore's standard retries, one layer only -----------------------------------------

class _Body:
    """The raw body botocore reads from a response (AWSResponse.content joins raw.stream())."""

    def __init__(self, data):
        self.data = data

    def stream(self, **_kw):
        yield self.data


def _throttled(request):
    """AWS IoT's answer to a throttled request, as the HTTP layer would return it."""
    from botocore.awsrequest import AWSResponse
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    return AWSResponse(request.url, 400, {"x-amzn-errortype": "ThrottlingException",
                                          "content-type": "application/json"}, _Body(body))


@pytest.fixture
def sent(monkeypatch):
    """Requests that reach the HTTP layer, and botocore's back-off sleeps (recorded, not slept). Only
    botocore's: a client thread another test left behind (paho's reconnect wait) keeps the real sleep."""
    import types

    import botocore.endpoint
    log = {"requests": 0, "sleeps": []}
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=log["sleeps"].append))
    return log


@pytest.mark.parametrize("k", [1, aws.MAX_ATTEMPTS - 1])
def test_call_throttled_fewer_times_than_max_attempts_succeeds(aws_env, fleet, sent, k):
    lines = []
    a = aws.Aws("demo", aws.session_client(), progress=lines.append)

    def throttle_k(request, **_kw):
        sent["requests"] += 1
        return _throttled(request) if sent["requests"] <= k else None  # then moto answers

    a.client.meta.events.register("before-send.iot.DescribeEndpoint", throttle_k)
    assert a.endpoint().endswith("amazonaws.com")
    assert sent["requests"] == k + 1 and len(sent["sleeps"]) == k
    assert all(0 <= s <= 20 for s in sent["sleeps"])  # botocore's jittered back-off, capped at 20 s
    assert lines == [f"AWS call describe_endpoint failed (ThrottlingException): retry {i} of {aws.MAX_ATTEMPTS - 1}"
                     for i in range(1, k + 1)]


def test_call_throttled_forever_makes_max_attempts_requests_then_one_line(aws_env, fleet, sent):
    a = aws.Aws("demo", aws.session_client())

    def throttle(request, **_kw):
        sent["requests"] += 1
        return _throttled(request)

    a.client.meta.events.register("before-send.iot.DescribeEndpoint", throttle)
    with pytest.raises(CommandError) as e:
        a.endpoint()
    assert sent["requests"] == aws.MAX_ATTEMPTS  # botocore's retries only: no loop stacked on top
    assert len(sent["sleeps"]) == aws.MAX_ATTEMPTS - 1
    assert str(e.value) == (f"AWS kept throttling describe_endpoint after {aws.MAX_ATTEMPTS} attempts: wait a minute "
                            "and run the same command again (it is safe to re-run)")


def test_unreachable_endpoint_is_one_line(aws_env, fleet, sent):
    from botocore.exceptions import EndpointConnectionError
    lines = []
    a = aws.Aws("demo", aws.session_client(), progress=lines.append)

    def unreachable(request, **_kw):
        sent["requests"] += 1
        raise EndpointConnectionError(endpoint_url=request.url)

    a.client.meta.events.register("before-send.iot.DescribeEndpoint", unreachable)
    with pytest.raises(CommandError, match=r"^cannot reach AWS IoT in eu-west-1 \(https://iot\.eu-west-1\."
                                           r"amazonaws\.com/endpoint\S*\): check the network and --region$"):
        a.endpoint()
    assert sent["requests"] == aws.MAX_ATTEMPTS  # a dropped connection is retried too, by botocore alone
    assert lines[-1] == f"AWS call describe_endpoint failed (EndpointConnectionError): retry {aws.MAX_ATTEMPTS - 1} " \
        f"of {aws.MAX_ATTEMPTS - 1}" and len(lines) == aws.MAX_ATTEMPTS - 1


def test_a_silent_endpoint_is_one_line_not_a_traceback(aws_env, fleet, sent):
    from botocore.exceptions import ReadTimeoutError
    a = aws.Aws("demo", aws.session_client())

    def silent(request, **_kw):
        sent["requests"] += 1
        raise ReadTimeoutError(endpoint_url=request.url)

    a.client.meta.events.register("before-send.iot.DescribeEndpoint", silent)
    with pytest.raises(CommandError, match=r"^AWS IoT in eu-west-1 did not answer describe_endpoint in time .*"
                                           r"it is safe to re-run\)$"):
        a.endpoint()
    assert sent["requests"] == aws.MAX_ATTEMPTS


def test_credentials_gone_at_call_time_is_one_line(aws_env, fleet):
    """As when the signer finds none (expired SSO session, env cleared): botocore raises NoCredentialsError."""
    from botocore.exceptions import NoCredentialsError
    a = aws.Aws("demo", aws.session_client())

    def no_credentials(**_kw):
        raise NoCredentialsError()

    a.client.meta.events.register("before-sign.iot.DescribeEndpoint", no_credentials)
    with pytest.raises(CommandError, match="^no AWS credentials: set AWS_PROFILE .* or run 'aws configure'$"):
        a.endpoint()


def _error(code, message, status=409):
    """A botocore (http, parsed) pair, as a before-call handler returns to short-circuit a request."""
    from botocore.awsrequest import AWSResponse
    http = AWSResponse("https://iot.example", status, {}, None)
    return http, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


def test_shipped_amazon_root_ca_is_checked():
    cert = aws.amazon_root_ca()
    assert cert.subject.rfc4514_string() == "CN=Amazon Root CA 1,O=Amazon,C=US"
    assert aws.cert_id(cert) == aws.ROOT_CA_SHA256


def test_flash_target_aws_writes_endpoint_root_ca_and_thing_client_id(aws_env, fleet, capsys, vboard):
    from board_helpers import mpremote
    rc, out, err = sp(capsys, "flash", "--target", "aws", "--port", "vboard:t0", "--device", "dev1", "--board", "unix",
                      "--no-reset")
    assert rc == 0, err
    assert "warning: dev1 is not registered in eu-west-1" in err  # told before it reaches a board
    cfg = json.loads(mpremote(vboard.port, "exec", "print(open('/config.json').read())").stdout)
    assert cfg["broker_host"].endswith("-ats.iot.eu-west-1.amazonaws.com")  # moto makes up the prefix each call
    assert cfg["broker_port"] == 8883 and cfg["client_id"] == "dev1"
    got = mpremote(vboard.port, "exec", "import binascii;print(binascii.hexlify(open('/certs/ca.der','rb').read()))")
    from cryptography.hazmat.primitives.serialization import Encoding
    assert aws.amazon_root_ca().public_bytes(Encoding.DER).hex() in got.stdout

    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1")
    rc, _, err = sp(capsys, "flash", "--target", "aws", "--port", "vboard:t0", "--device", "dev1", "--board", "unix",
                    "--no-reset")
    assert rc == 0 and "warning" not in err


def test_verify_target_aws_uses_the_ats_endpoint(aws_env, fleet, capsys, monkeypatch):
    import re
    import socket
    endpoint = r"[a-z0-9]+-ats\.iot\.eu-west-1\.amazonaws\.com"

    def no_network(addr, *_a, **_kw):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "create_connection", no_network)  # the moto endpoint does not exist
    rc, _, err = sp(capsys, "verify", "--target", "aws", "--timeout", "5")
    assert rc == 3 and re.search(f"verifying on {endpoint}:8883", err) and re.search(f"reach {endpoint}:8883", err)
    rc, _, err = sp(capsys, "verify", "--target", "aws", "--alpn", "--timeout", "5")
    assert rc == 3 and re.search(f"reach {endpoint}:443", err), err
    rc, _, err = sp(capsys, "verify", "--alpn")
    assert rc == 1 and "--target aws" in err


@pytest.mark.parametrize("setting, line", [("client_id=other", "client_id must be the thing name 'dev1'"),
                                           ("topic_prefix=site1", "topic_prefix must be 'devices'")])
def test_flash_target_aws_refuses_what_the_policy_would_refuse(aws_env, fleet, capsys, setting, line):
    rc, _, err = sp(capsys, "flash", "--target", "aws", "--port", "vboard:none", "--device", "dev1", "--board", "unix",
                    "--set", setting)
    assert rc == 1 and line in err and err.count("\n") == 1


def test_revoke_reaches_aws_for_every_certificate_of_the_device(aws_env, fleet, capsys):
    assert sp(capsys, "aws", "register-ca")[0] == 0
    assert sp(capsys, "aws", "register-device", "dev1", "dev2")[0] == 0
    first = aws.cert_id(pki.load_cert(fleet.device_dir("dev1") / "client.pem"))
    pki.renew_device("demo", "dev1")  # a renewed device: both certificates registered, the old one not yet retired
    second = aws.cert_id(pki.load_cert(fleet.device_dir("dev1") / "client.pem"))
    aws_env.register_certificate(certificatePem=(fleet.device_dir("dev1") / "client.pem").read_text(),
                                 caCertificatePem=fleet.ca_cert.read_text(), status="ACTIVE")
    rc, out, err = sp(capsys, "pki", "revoke", "dev1", "--fleet", "demo")
    assert rc == 0 and "sensorpub aws revoke dev1" in out
    rc, out, err = sp(capsys, "aws", "revoke", "dev1")
    assert rc == 0 and "2 certificate(s) set REVOKED" in out, err
    status = lambda cid: aws_env.describe_certificate(certificateId=cid)["certificateDescription"]["status"]
    assert (status(first), status(second)) == ("REVOKED", "REVOKED")
    other = aws.cert_id(pki.load_cert(fleet.device_dir("dev2") / "client.pem"))
    assert status(other) == "ACTIVE"
    rc, out, _ = sp(capsys, "aws", "revoke", "dev1")
    assert rc == 0 and "nothing changed" in out


# --- the fleet's topic rule: telemetry to Lambda or DynamoDB ------------------------------------------
# moto implements topic rules (create/replace/get/list/delete), Lambda permissions (add/get_policy/remove) and
# DynamoDB tables. What it does not: it accepts any role ARN (AWS IoT assumes it at create time and refuses one
# it cannot), accepts the same StatementId twice (AWS: ResourceConflictException), and answers GetTopicRule for
# a missing rule with ResourceNotFoundException (AWS: UnauthorizedException; test_rule_never_reads_a_rule_...).

TELEMETRY_SQL = "SELECT * FROM 'devices/+/telemetry'"


def _function(name="readings"):
    """A Lambda function in moto (its code never runs here)."""
    import io
    import zipfile
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"Service": "lambda.amazonaws.com"}}]}
    iam = _client("iam")
    try:
        role = iam.get_role(RoleName="fn-exec")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName="fn-exec", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("main.py", "def handler(event, context):\n    return event\n")
    return _client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="main.handler",
        Code={"ZipFile": buf.getvalue()})["FunctionArn"]


def _table(name="readings", keys=(("device_id", "HASH", "S"), ("seq", "RANGE", "N"))):
    _client("dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": n, "KeyType": k} for n, k, _ in keys],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, _, t in keys])
    return name


def _invoke_statements(arn):
    """The statements of the function's resource policy ([] when it has none)."""
    lam = _client("lambda")
    try:
        return json.loads(lam.get_policy(FunctionName=arn)["Policy"])["Statement"]
    except lam.exceptions.ResourceNotFoundException:
        return []


def _rules(iot):
    return sorted(r["ruleName"] for r in iot.list_topic_rules()["rules"])


ROLE = "arn:aws:iam::123456789012:role/sensorpub-readings"


def test_rule_to_lambda_has_the_telemetry_sql_and_lets_only_this_rule_invoke(aws_env, home, capsys):
    fn = _function()
    rc, out, err = sp(capsys, "aws", "rule", "create", "--lambda", fn)
    assert rc == 0, err
    got = aws_env.get_topic_rule(ruleName="sensorpub_demo_telemetry")
    rule = got["rule"]
    assert rule["sql"] == TELEMETRY_SQL and rule["awsIotSqlVersion"] == "2016-03-23"
    assert rule["actions"] == [{"lambda": {"functionArn": fn}}] and rule["ruleDisabled"] is False
    assert "created" in out and fn in out
    [st] = _invoke_statements(fn)
    assert st["Sid"] == "sensorpub-demo-rule" and st["Action"] == "lambda:InvokeFunction"
    assert st["Principal"] == {"Service": "iot.amazonaws.com"}
    assert st["Condition"]["ArnLike"] == {"AWS:SourceArn": got["ruleArn"]}  # this rule, no other
    assert st["Condition"]["StringEquals"] == {"AWS:SourceAccount": "123456789012"}

    rc, out, err = sp(capsys, "aws", "rule", "create", "--lambda", fn)  # again: nothing changes
    assert rc == 0 and out.endswith("(already so: nothing changed)\n"), out
    assert len(_invoke_statements(fn)) == 1  # moto would accept a second statement: we must not add one
    assert aws_env.get_topic_rule(ruleName="sensorpub_demo_telemetry")["rule"] == rule

    rc, out, _ = sp(capsys, "aws", "rule", "create", "--lambda", fn, "--json")
    r = json.loads(out)
    assert (r["rule"], r["fleet"], r["lambda"], r["dynamodb"], r["changed"], r["changes"]) == \
        ("sensorpub_demo_telemetry", "demo", fn, None, None, [])


def test_rule_create_again_replaces_it_and_moves_the_permission(aws_env, home, capsys):
    first, second = _function("first"), _function("second")
    assert sp(capsys, "aws", "rule", "create", "--lambda", first)[0] == 0
    rc, out, err = sp(capsys, "aws", "rule", "create", "--lambda", second)
    assert rc == 0 and "(replaced" in out, (out, err)
    assert aws_env.get_topic_rule(ruleName="sensorpub_demo_telemetry")["rule"]["actions"] == \
        [{"lambda": {"functionArn": second}}]
    assert _invoke_statements(first) == [] and len(_invoke_statements(second)) == 1

    _table()
    rc, out, err = sp(capsys, "aws", "rule", "create", "--dynamodb", "readings", "--role-arn", ROLE)
    assert rc == 0 and "(replaced" in out, err
    assert aws_env.get_topic_rule(ruleName="sensorpub_demo_telemetry")["rule"]["actions"] == \
        [{"dynamoDBv2": {"roleArn": ROLE, "putItem": {"tableName": "readings"}}}]
    assert _invoke_statements(second) == []  # no rule sends there any more: no permission left behind
    assert _rules(aws_env) == ["sensorpub_demo_telemetry"]  # still one rule per fleet


def test_rule_to_dynamodb_needs_a_role_and_a_table_a_reading_can_fill(aws_env, home, capsys):
    rc, out, err = sp(capsys, "aws", "rule", "create", "--dynamodb", "readings")
    assert (rc, out) == (1, "") and err.count("\n") == 1 and "--dynamodb needs --role-arn" in err
    rc, _, err = sp(capsys, "aws", "rule", "create", "--dynamodb", "readings", "--role-arn", ROLE)
    assert rc == 1 and err.count("\n") == 1 and "no such table in eu-west-1" in err
    _table("by_id", keys=(("id", "HASH", "S"),))
    rc, _, err = sp(capsys, "aws", "rule", "create", "--dynamodb", "by_id", "--role-arn", ROLE)
    assert rc == 1 and "partition key id (S) is not one a reading fills" in err, err
    _table("typed_wrong", keys=(("device_id", "HASH", "N"),))
    rc, _, err = sp(capsys, "aws", "rule", "create", "--dynamodb", "typed_wrong", "--role-arn", ROLE)
    assert rc == 1 and "partition key device_id (N)" in err, err
    assert _rules(aws_env) == []  # nothing was created by a refused command

    _table("latest", keys=(("device_id", "HASH", "S"),))
    rc, _, err = sp(capsys, "aws", "rule", "create", "--dynamodb", "latest", "--role-arn", ROLE)
    assert rc == 0 and "each reading replaces its device's previous one" in err
    _table()
    rc, _, err = sp(capsys, "aws", "rule", "create", "--dynamodb", "readings", "--role-arn", ROLE)
    assert rc == 0 and "replaces its device's previous" not in err
    assert aws_env.get_topic_rule(ruleName="sensorpub_demo_telemetry")["rule"]["sql"] == TELEMETRY_SQL


@pytest.mark.parametrize("args, text", [
    ([], "say where the readings go: --lambda FUNCTION_ARN, or --dynamodb TABLE --role-arn ROLE_ARN"),
    (["--lambda", "readings"], "--lambda 'readings' is not a Lambda function ARN"),
    (["--lambda", "arn:aws:lambda:eu-west-1:123456789012:function:nosuch"], "no such function in eu-west-1"),
    (["--lambda", "arn:aws:lambda:eu-west-1:123456789012:function:x", "--role-arn", ROLE], "--role-arn is for"),
    (["--dynamodb", "readings", "--role-arn", "sensorpub-readings"], "is not an IAM role ARN"),
    (["--dynamodb", "t1", "--role-arn", ROLE], "--dynamodb 't1' is not a DynamoDB table name"),
])
def test_rule_create_refuses_bad_flags_in_one_line(aws_env, home, capsys, args, text):
    rc, out, err = sp(capsys, "aws", "rule", "create", *args)
    assert (rc, out) == (1, "") and err.count("\n") == 1 and text in err, err
    assert "Traceback" not in err and _rules(aws_env) == []


def test_rule_list_shows_every_fleets_rule_and_delete_removes_ours(aws_env, home, capsys):
    rc, out, err = sp(capsys, "aws", "rule", "list")
    assert (rc, out) == (3, "") and "fleet 'demo' has no topic rule" in err
    fn = _function()
    assert sp(capsys, "aws", "rule", "create", "--lambda", fn)[0] == 0
    _table()
    rc, _, err = sp(capsys, "aws", "rule", "create", "--fleet", "site-1", "--dynamodb", "readings", "--role-arn", ROLE)
    assert rc == 0 and "topic rule sensorpub_demo_telemetry of fleet 'demo' takes the same topic" in err
    aws_env.create_topic_rule(ruleName="someone_elses", topicRulePayload={"sql": "SELECT * FROM 'x'", "actions": []})

    rc, out, _ = sp(capsys, "aws", "rule", "list", "--json")
    assert rc == 0
    assert [(r["rule"], r["fleet"], r["lambda"], r["dynamodb"], r["enabled"]) for r in json.loads(out)] == [
        ("sensorpub_demo_telemetry", "demo", fn, None, True),
        ("sensorpub_site_1_telemetry", "site-1", None, "readings", True)]  # '-' becomes '_'; not someone_elses
    rc, out, _ = sp(capsys, "aws", "rule", "list")
    assert rc == 0 and len(out.splitlines()) == 2 and f"fleet demo  enabled  {TELEMETRY_SQL} -> Lambda {fn}" in out

    rc, out, _ = sp(capsys, "aws", "rule", "delete")
    assert rc == 0 and out == f"deleted topic rule sensorpub_demo_telemetry in {REGION} (it sent to Lambda {fn})\n"
    assert _rules(aws_env) == ["sensorpub_site_1_telemetry", "someone_elses"]
    assert _invoke_statements(fn) == []
    rc, out, _ = sp(capsys, "aws", "rule", "delete")
    assert rc == 0 and "nothing to delete" in out
    assert sp(capsys, "aws", "rule", "list")[0] == 3


def test_rule_of_another_fleet_with_the_same_name_is_not_touched(aws_env, home, capsys):
    fn = _function()
    assert sp(capsys, "aws", "rule", "create", "--fleet", "a-b", "--lambda", fn)[0] == 0
    rule = aws_env.get_topic_rule(ruleName="sensorpub_a_b_telemetry")["rule"]
    for action in (["create", "--lambda", fn], ["delete"]):
        rc, _, err = sp(capsys, "aws", "rule", *action, "--fleet", "a_b")  # a_b maps to the same rule name
        assert rc == 1 and err.count("\n") == 1 and "is not fleet 'a_b''s" in err, err
    pki.init_ca("a_b")
    rc, out, err = sp(capsys, "aws", "teardown", "--all", "--yes", "--fleet", "a_b")  # nor deleted with fleet a_b
    assert rc == 0 and "nothing of fleet 'a_b' to delete" in out, err
    assert aws_env.get_topic_rule(ruleName="sensorpub_a_b_telemetry")["rule"] == rule


def test_rule_never_reads_a_rule_that_is_not_listed(aws_env, home, capsys):
    """AWS answers GetTopicRule for a missing rule with UnauthorizedException ('Access to topic rule ... was
    denied'), not ResourceNotFoundException as moto does: create must work against that answer."""
    fn = _function()
    a = aws.Aws("demo", aws.session_client())

    def like_aws(params, **_kw):
        name = params["url_path"].rsplit("/", 1)[1]
        names = [r["ruleName"] for r in _client("iot").list_topic_rules()["rules"]]
        if name not in names:
            return _error("UnauthorizedException", f"Access to topic rule '{name}' was denied", 401)
        return None

    a.client.meta.events.register("before-call.iot.GetTopicRule", like_aws)
    with pytest.raises(a.client.exceptions.UnauthorizedException):  # the stand-in answers as AWS does
        a.client.get_topic_rule(ruleName="sensorpub_demo_telemetry")
    assert a.rule_create(fn, None, None)["changed"] == "created"
    assert a.rule_delete()["lambda"] == fn
    assert a.rule_delete() is None


def test_teardown_all_deletes_the_rule_and_its_permission(aws_env, fleet, capsys):
    sp(capsys, "aws", "register-ca")
    sp(capsys, "aws", "register-device", "dev1")
    fn = _function()
    assert sp(capsys, "aws", "rule", "create", "--lambda", fn)[0] == 0
    assert sp(capsys, "aws", "teardown", "dev1", "--yes")[0] == 0  # one device: the fleet's rule stays
    assert _rules(aws_env) == ["sensorpub_demo_telemetry"]
    rc, out, err = sp(capsys, "aws", "teardown", "--all", "--yes")
    assert rc == 0 and "topic rule sensorpub_demo_telemetry" in out, err
    assert _rules(aws_env) == [] and _invoke_statements(fn) == []
    assert account_state(aws_env) == ({}, {}, {}, {})


def test_rule_role_aws_cannot_assume_is_one_line(aws_env, home):
    """AWS IoT assumes a DynamoDB action's role when the rule is written and refuses one it cannot (moto does not)."""
    _table()
    a = aws.Aws("demo", aws.session_client())
    a.client.meta.events.register("before-call.iot.CreateTopicRule", lambda **_kw: _error(
        "InvalidRequestException", f"Unable to assume role: {ROLE}", 400))
    with pytest.raises(CommandError, match=r"^AWS IoT refused topic rule sensorpub_demo_telemetry "
                                           r"\(InvalidRequestException: Unable to assume role: .*\): check --role-arn "
                                           r"\(it must trust iot.amazonaws.com, and you need iam:PassRole on it\)"):
        a.rule_create(None, "readings", ROLE)
    assert _rules(aws_env) == []
