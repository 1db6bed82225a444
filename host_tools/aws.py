"""`sensorpub aws`: the fleet's own CA, its devices and least-privilege policies in AWS IoT Core.

Every step looks before it writes, so each command can be re-run: a re-run finds what exists
and changes nothing. Resources are named after the fleet (policies `sensorpub-<fleet>-device`
and `sensorpub-<fleet>-verifier`, things carry the attribute `sensorpub_fleet=<fleet>`), which
is how `teardown --all` finds them. AWS identifies a certificate by the SHA-256 of its DER
bytes, so the fleet's files alone tell which certificate ids are ours.
"""
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CommandError
from .paths import VERIFIER_CN, check_name
from .pki import Fleet, build_leaf, load_cert, new_key

Progress = Callable[[str], None]

THING = "${iot:Connection.Thing.ThingName}"
FLEET_ATTR = "sensorpub_fleet"
TOPIC_PREFIX = "devices"
ROOT_CA_FILE = Path(__file__).resolve().parent / "data" / "AmazonRootCA1.pem"
# SHA-256 of Amazon Root CA 1 (DER): the shipped file is checked against it before use
ROOT_CA_SHA256 = "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
THROTTLED = ("Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
             "ServiceUnavailableException")
ATTEMPTS = 6
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
DETACH_WAIT_S = 30.0


def _quiet(_msg: str) -> None:
    pass


def policy_names(fleet: str) -> Dict[str, str]:
    return {"device": f"sensorpub-{fleet}-device", "verifier": f"sensorpub-{fleet}-verifier"}


def device_policy(arn_prefix: str) -> dict:
    """A device connects only as its own thing and publishes only its own two topics.

    `arn_prefix` is `arn:<partition>:iot:<region>:<account>`. iot:RetainPublish (status only)
    is there because the online/offline status and its Last Will are retained messages; the
    ConnectAttributes condition allows a Last Will but not a persistent session."""
    own = f"{arn_prefix}:topic/{TOPIC_PREFIX}/{THING}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ConnectAsItsThing", "Effect": "Allow", "Action": "iot:Connect",
             "Resource": f"{arn_prefix}:client/{THING}",
             "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"},
                           "ForAllValues:StringEquals": {"iot:ConnectAttributes": ["LastWill"]}}},
            {"Sid": "PublishItsReadingsAndStatus", "Effect": "Allow", "Action": "iot:Publish",
             "Resource": [f"{own}/telemetry", f"{own}/status"]},
            {"Sid": "RetainItsStatus", "Effect": "Allow", "Action": "iot:RetainPublish",
             "Resource": f"{own}/status"},
        ],
    }


def verifier_policy(arn_prefix: str) -> dict:
    """The host-side verifier reads every device's topics and publishes nothing."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ConnectAsVerifier", "Effect": "Allow", "Action": "iot:Connect",
             "Resource": f"{arn_prefix}:client/{VERIFIER_CN}-*"},
            {"Sid": "SubscribeDeviceTopics", "Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": f"{arn_prefix}:topicfilter/{TOPIC_PREFIX}/*"},
            {"Sid": "ReceiveDeviceTopics", "Effect": "Allow", "Action": "iot:Receive",
             "Resource": f"{arn_prefix}:topic/{TOPIC_PREFIX}/*"},
        ],
    }


def jitp_template(fleet: str) -> dict:
    """A provisioning template for just-in-time provisioning: thing named after the certificate CN,
    certificate activated, the fleet's device policy attached."""
    return {
        "Parameters": {
            "AWS::IoT::Certificate::CommonName": {"Type": "String"},
            "AWS::IoT::Certificate::Id": {"Type": "String"},
        },
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing",
                      "Properties": {"ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
                                     "AttributePayload": {FLEET_ATTR: fleet}}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                           "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": policy_names(fleet)["device"]}},
        },
    }


def policy_to_acl(policy: dict, user: Optional[str] = None) -> str:
    """Mosquitto ACL lines with the same topic rights as an AWS IoT policy (used by the local stand-in).

    Publish becomes `write`, Subscribe/Receive become `read`; the thing-name variable becomes
    `%u` (the certificate CN, which is the thing name) and a trailing `*` becomes `#`."""
    rights: Dict[str, set] = {}
    for st in policy["Statement"]:
        if st["Effect"] != "Allow":
            continue
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for act in actions:
            mode = {"iot:Publish": "write", "iot:Subscribe": "read", "iot:Receive": "read"}.get(act)
            if not mode:
                continue
            for res in resources:
                kind, _, topic = res.split(":", 5)[5].partition("/")
                if kind not in ("topic", "topicfilter"):
                    continue
                topic = topic.replace(THING, "%u")
                if topic.endswith("*"):
                    topic = topic[:-1] + "#"
                rights.setdefault(topic, set()).add(mode)
    lines = [f"user {user}"] if user else []
    for topic in sorted(rights):
        m = rights[topic]
        mode = "readwrite" if m == {"read", "write"} else next(iter(m))
        lines.append(("pattern " if "%u" in topic else "topic ") + f"{mode} {topic}")
    return "\n".join(lines) + "\n"


def standin_acl(arn_prefix: str = "arn:aws:iot:local:000000000000") -> str:
    """The Mosquitto ACL that grants what the two fleet policies grant (for a local AWS stand-in)."""
    return ("# generated by sensorpub from the AWS IoT policies sensorpub-<fleet>-device and -verifier\n"
            + policy_to_acl(verifier_policy(arn_prefix), user=VERIFIER_CN) + "\n"
            + policy_to_acl(device_policy(arn_prefix)))


def cert_id(cert: x509.Certificate) -> str:
    """AWS IoT's certificate id: the SHA-256 of the DER encoding, in hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def verification_certificate(ca_cert: x509.Certificate, ca_key, code: str) -> x509.Certificate:
    """Proof of possession of the CA key: CN = the account's registration code, signed by the CA.

    Its key pair lives only in memory and is dropped on return."""
    key = new_key("ec256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)])
    return build_leaf(ca_cert, ca_key, subject, key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH, days=1)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)  # issuer name and signature
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def amazon_root_ca(path: Optional[str] = None) -> x509.Certificate:
    """Amazon Root CA 1 as shipped in host_tools/data (checked by fingerprint), or a CA file the user gives."""
    if path:
        p = Path(path)
        if not p.exists():
            raise CommandError(f"--aws-root-ca {p}: no such file; give a PEM or DER CA certificate")
        return load_cert(p)
    cert = load_cert(ROOT_CA_FILE)
    if cert_id(cert) != ROOT_CA_SHA256:
        raise CommandError(f"{ROOT_CA_FILE} is not Amazon Root CA 1 (fingerprint mismatch): restore it from git")
    return cert


# --- the client -----------------------------------------------------------------------------------

def session_client(region: Optional[str] = None, profile: Optional[str] = None):
    """A boto3 IoT client, with the usual AWS configuration and a clear line for each way it can be missing."""
    import boto3
    import botocore.config
    import botocore.exceptions as bx
    try:
        s = boto3.Session(profile_name=profile, region_name=region)
    except bx.ProfileNotFound:
        raise CommandError(f"AWS profile {profile!r} is not in ~/.aws/config: check --profile/AWS_PROFILE "
                           "('aws configure list-profiles' lists them)") from None
    r = s.region_name
    if not r:
        raise CommandError("no AWS region: pass --region (e.g. --region eu-west-1) or set AWS_REGION")
    known = set()
    for part in s.get_available_partitions():
        known.update(s.get_available_regions("iot", part))
    if known and r not in known:
        raise CommandError(f"region {r!r} has no AWS IoT Core: check --region/AWS_REGION "
                           f"(e.g. {', '.join(sorted(known)[:4])}, ...)")
    try:
        creds = s.get_credentials()
    except bx.BotoCoreError as e:
        raise CommandError(f"cannot load AWS credentials: {e}") from None
    if creds is None:
        raise CommandError("no AWS credentials: set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, or run 'aws configure'")
    cfg = botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=30)
    return s.client("iot", region_name=r, config=cfg)


@dataclass
class Aws:
    """The fleet in one account and region."""
    fleet: str
    client: object
    progress: Progress = _quiet
    sleep: Callable[[float], None] = time.sleep
    actions: List[str] = field(default_factory=list)  # what this run changed, in order

    @property
    def region(self) -> str:
        return self.client.meta.region_name  # type: ignore[attr-defined]

    def call(self, op: str, **kw):
        """One API call: throttling is retried with full-jitter backoff, everything else is one clear line."""
        import botocore.exceptions as bx
        for attempt in range(ATTEMPTS):
            try:
                return getattr(self.client, op)(**kw)
            except bx.ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code in THROTTLED and attempt < ATTEMPTS - 1:
                    delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt))
                    self.progress(f"AWS is throttling {op} ({code}); retry {attempt + 1} in {delay:.1f} s")
                    self.sleep(delay)
                    continue
                if code in THROTTLED:
                    raise CommandError(f"AWS kept throttling {op} after {ATTEMPTS} attempts: wait a minute and run "
                                       "the same command again (it is safe to re-run)") from None
                raise
            except bx.NoCredentialsError:
                raise CommandError("no AWS credentials: set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID "
                                   "and AWS_SECRET_ACCESS_KEY, or run 'aws configure'") from None
            except bx.EndpointConnectionError as e:
                raise CommandError(f"cannot reach AWS IoT in {self.region} ({e.kwargs.get('endpoint_url')}): check "
                                   "the network and --region") from None
        raise AssertionError("unreachable")

    def code(self, e) -> str:
        return e.response.get("Error", {}).get("Code", "")

    def explain(self, e, doing: str) -> CommandError:
        code, msg = self.code(e), e.response.get("Error", {}).get("Message", "")
        if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
                    "InvalidSignatureException"):
            return CommandError(f"AWS rejected the credentials while {doing} ({code}): refresh them "
                                "('aws sso login' or new access keys) and check --profile")
        if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedException"):
            return CommandError(f"AWS denied {doing} ({code}: {msg}): the IAM user or role needs the iot:* "
                                "permissions listed in the README")
        return CommandError(f"AWS failed while {doing}: {code}: {msg}")

    def _did(self, what: str) -> None:
        self.actions.append(what)
        self.progress(what)

    def _get(self, op: str, **kw) -> Optional[dict]:
        """describe-style call; None when the resource does not exist."""
        import botocore.exceptions as bx
        try:
            return self.call(op, **kw)
        except bx.ClientError as e:
            if self.code(e) == "ResourceNotFoundException":
                return None
            raise self.explain(e, op) from None

    def _do(self, op: str, doing: str, **kw):
        import botocore.exceptions as bx
        try:
            return self.call(op, **kw)
        except bx.ClientError as e:
            raise self.explain(e, doing) from None

    def _pages(self, op: str, key: str, **kw) -> list:
        """All pages of a list call (these calls page with either marker/nextMarker or nextToken)."""
        out: list = []
        token_arg = "nextToken" if op in ("list_things", "list_thing_principals") else "marker"
        token = None
        while True:
            page = self._do(op, op.replace("_", " "), **dict(kw, **({token_arg: token} if token else {})))
            out += page.get(key, [])
            token = page.get("nextMarker") or page.get("nextToken")
            if not token:
                return out

    # --- the fleet's files --------------------------------------------------------------------------

    @property
    def pki(self) -> Fleet:
        return Fleet(self.fleet)

    def ca_cert(self) -> x509.Certificate:
        return self.pki.require_ca()[0]

    def ca_id(self) -> str:
        return cert_id(self.ca_cert())

    def identity(self, name: str) -> x509.Certificate:
        """The device's (or, for VERIFIER_CN, the verifier's) certificate, checked against the fleet CA."""
        f = self.pki
        path = f.verifier_dir / "verifier.pem" if name == VERIFIER_CN else f.device_dir(name) / "client.pem"
        fix = f"sensorpub {'pki verifier' if name == VERIFIER_CN else 'pki device ' + name} --fleet {self.fleet}"
        if not path.exists():
            raise CommandError(f"{path} is missing: run '{fix}' first")
        cert = load_cert(path)
        if not issued_by(cert, self.ca_cert()):
            raise CommandError(f"{path} was not issued by the fleet CA {f.ca_cert} (was the CA re-created?): "
                               f"re-issue it with '{fix} --force'")
        return cert

    # --- CA -----------------------------------------------------------------------------------------

    def describe_ca(self) -> Optional[dict]:
        d = self._get("describe_ca_certificate", certificateId=self.ca_id())
        if not d:
            return None
        return dict(d["certificateDescription"], registrationConfig=d.get("registrationConfig") or {})

    def require_ca(self) -> dict:
        d = self.describe_ca()
        if not d:
            raise CommandError(f"the fleet CA of {self.fleet!r} is not registered in {self.region}: run "
                               f"'sensorpub aws register-ca --fleet {self.fleet}' (with the same --region)")
        if d["status"] != "ACTIVE":
            raise CommandError(f"the fleet CA is registered in {self.region} but {d['status']}: run "
                               f"'sensorpub aws register-ca --fleet {self.fleet}' to activate it")
        return d

    def register_ca(self, template: Optional[dict] = None, role_arn: Optional[str] = None) -> dict:
        import botocore.exceptions as bx
        ca_cert, ca_key = self.pki.require_ca()
        d = self.describe_ca()
        if d:
            self.progress(f"the fleet CA is already registered in {self.region} ({d['certificateId'][:12]}..., "
                          f"{d['status']})")
            if d["status"] != "ACTIVE":
                self._do("update_ca_certificate", "activating the CA", certificateId=d["certificateId"],
                         newStatus="ACTIVE")
                self._did("set the CA ACTIVE")
        else:
            code = self._do("get_registration_code", "getting the registration code")["registrationCode"]
            self.progress(f"registration code {code}: signing a verification certificate with the fleet CA")
            ver = verification_certificate(ca_cert, ca_key, code)
            kw = {"caCertificate": pem(ca_cert), "verificationCertificate": pem(ver), "setAsActive": True}
            if template is not None:
                kw.update(allowAutoRegistration=True,
                          registrationConfig={"templateBody": json.dumps(template), "roleArn": role_arn})
            try:
                self.call("register_ca_certificate", **kw)
            except bx.ClientError as e:
                c = self.code(e)
                if c == "ResourceAlreadyExistsException":
                    raise CommandError(f"the fleet CA is already registered by another AWS account in {self.region} "
                                       "(a CA can be registered by one account per region): deregister it there "
                                       "('sensorpub aws teardown --all' with that account's credentials) or make a "
                                       "new fleet") from None
                if c in ("RegistrationCodeValidationException", "CertificateValidationException"):
                    raise CommandError(f"AWS refused the fleet CA or its verification certificate ({c}: "
                                       f"{e.response['Error'].get('Message', '')}): run the command again; if it "
                                       "persists, check the CA with 'sensorpub pki list'") from None
                raise self.explain(e, "registering the CA") from None
            self._did(f"registered the fleet CA in {self.region} and set it ACTIVE")
            d = self.require_ca()
        if template is not None:
            self.ensure_policy("device", d["certificateArn"])
            cfg = d["registrationConfig"]
            if d.get("autoRegistrationStatus", "ENABLE") != "ENABLE" or cfg.get("roleArn") != role_arn or \
                    _json_or_none(cfg.get("templateBody")) != template:
                self._do("update_ca_certificate", "enabling auto-registration", certificateId=d["certificateId"],
                         newAutoRegistrationStatus="ENABLE",
                         registrationConfig={"templateBody": json.dumps(template), "roleArn": role_arn})
                self._did("enabled just-in-time provisioning with the template")
        return self.require_ca()

    # --- policies -----------------------------------------------------------------------------------

    def ensure_policy(self, role: str, any_arn: str) -> str:
        """Create the fleet's policy once; a changed document becomes the new default version."""
        name = policy_names(self.fleet)[role]
        prefix = ":".join(any_arn.split(":")[:5])
        doc = (device_policy if role == "device" else verifier_policy)(prefix)
        got = self._get("get_policy", policyName=name)
        if not got:
            self._do("create_policy", f"creating policy {name}", policyName=name, policyDocument=json.dumps(doc))
            self._did(f"created policy {name}")
        elif json.loads(got["policyDocument"]) != doc:
            versions = self._do("list_policy_versions", "listing policy versions", policyName=name)["policyVersions"]
            for v in versions:
                if not v["isDefaultVersion"]:
                    self._do("delete_policy_version", "pruning old policy versions", policyName=name,
                             policyVersionId=v["versionId"])
            self._do("create_policy_version", f"updating policy {name}", policyName=name,
                     policyDocument=json.dumps(doc), setAsDefault=True)
            self._did(f"updated policy {name} to the current document")
        return name

    def _attach_policy(self, name: str, cert_arn: str) -> None:
        attached = [p["policyName"] for p in self._pages("list_attached_policies", "policies", target=cert_arn)]
        if name not in attached:
            self._do("attach_policy", f"attaching {name}", policyName=name, target=cert_arn)
            self._did(f"attached policy {name} to the certificate")

    # --- certificates and things --------------------------------------------------------------------

    def _ensure_cert(self, cert: x509.Certificate, label: str) -> str:
        import botocore.exceptions as bx
        cid = cert_id(cert)
        d = self._get("describe_certificate", certificateId=cid)
        if d:
            desc = d["certificateDescription"]
            if desc["status"] != "ACTIVE":
                if desc["status"] == "REVOKED":
                    raise CommandError(f"the certificate of {label} is REVOKED in AWS: issue a new one with "
                                       f"'sensorpub pki device {label} --force' and register again")
                self._do("update_certificate", "activating the certificate", certificateId=cid, newStatus="ACTIVE")
                self._did(f"set the certificate of {label} ACTIVE")
            return desc["certificateArn"]
        try:
            r = self.call("register_certificate", certificatePem=pem(cert), caCertificatePem=pem(self.ca_cert()),
                          status="ACTIVE")
        except bx.ClientError as e:
            if self.code(e) in ("CertificateValidationException", "CertificateConflictException"):
                raise CommandError(f"AWS did not accept the certificate of {label} as issued by the registered fleet "
                                   f"CA ({self.code(e)}: {e.response['Error'].get('Message', '')}): re-issue it with "
                                   f"'sensorpub pki device {label} --force'") from None
            raise self.explain(e, f"registering the certificate of {label}") from None
        self._did(f"registered the certificate of {label} ({cid[:12]}...) and set it ACTIVE")
        return r["certificateArn"]

    def register_device(self, name: str) -> dict:
        check_name("device", name)
        cert = self.identity(name)
        self.require_ca()
        arn = self._ensure_cert(cert, name)
        thing = self._get("describe_thing", thingName=name)
        if thing:
            owner = thing.get("attributes", {}).get(FLEET_ATTR)
            if owner != self.fleet:
                raise CommandError(f"a thing named {name!r} already exists in {self.region} and is not in fleet "
                                   f"{self.fleet!r} ({FLEET_ATTR}={owner}): choose another device name or delete it")
        else:
            self._do("create_thing", f"creating thing {name}", thingName=name,
                     attributePayload={"attributes": {FLEET_ATTR: self.fleet}})
            self._did(f"created thing {name}")
        policy = self.ensure_policy("device", arn)
        self._attach_policy(policy, arn)
        principals = self._pages("list_thing_principals", "principals", thingName=name)
        if arn not in principals:
            self._do("attach_thing_principal", "attaching the certificate to the thing", thingName=name, principal=arn)
            self._did(f"attached the certificate to thing {name}")
        for old in principals:  # an earlier certificate of this device (re-issued with --force): retire it
            if old != arn:
                self.progress(f"retiring an older certificate of {name}: {old.rsplit('/', 1)[-1][:12]}...")
                self._retire_cert(old, [name])
        return {"thing": name, "certificateArn": arn, "certificateId": cert_id(cert), "policy": policy}

    def register_verifier(self) -> dict:
        cert = self.identity(VERIFIER_CN)
        self.require_ca()
        arn = self._ensure_cert(cert, "the verifier")
        policy = self.ensure_policy("verifier", arn)
        self._attach_policy(policy, arn)
        return {"certificateArn": arn, "certificateId": cert_id(cert), "policy": policy}

    def revoke_device(self, name: str) -> List[str]:
        """Mark every certificate of the device that AWS knows (the current one and earlier ones in history/)
        REVOKED, so AWS refuses them as the local CRL does. Returns the certificate ids changed."""
        d = self.pki.device_dir(name)
        paths = [d / "client.pem", *sorted((d / "history").glob("*.pem"))]
        if not paths[0].exists():
            raise CommandError(f"no device {name!r} in fleet {self.fleet!r}: nothing to revoke")
        changed = []
        for p in paths:
            cid = cert_id(load_cert(p))
            desc = self._get("describe_certificate", certificateId=cid)
            if desc and desc["certificateDescription"]["status"] != "REVOKED":
                self._do("update_certificate", f"revoking certificate {cid[:12]}...", certificateId=cid,
                         newStatus="REVOKED")
                self._did(f"set certificate {cid[:12]}... of {name} REVOKED")
                changed.append(cid)
        return changed

    def endpoint(self) -> str:
        return self._do("describe_endpoint", "looking up the endpoint", endpointType="iot:Data-ATS")["endpointAddress"]

    def is_registered(self, name: str) -> bool:
        d = self._get("describe_certificate", certificateId=cert_id(self.identity(name)))
        return bool(d and d["certificateDescription"]["status"] == "ACTIVE")

    # --- teardown -----------------------------------------------------------------------------------

    def plan_teardown(self, names: Optional[List[str]]) -> dict:
        """What teardown would delete: names=None means the whole fleet."""
        ca = self.describe_ca()
        if names is None:
            things = [t["thingName"] for t in self._pages("list_things", "things", attributeName=FLEET_ATTR,
                                                           attributeValue=self.fleet)]
        else:
            things = []
            for n in names:
                t = self._get("describe_thing", thingName=check_name("device", n))
                if t and t.get("attributes", {}).get(FLEET_ATTR) == self.fleet:
                    things.append(n)
                elif t:
                    raise CommandError(f"thing {n!r} is not in fleet {self.fleet!r}: not deleting it")
        certs: Dict[str, List[str]] = {}
        for t in things:
            for p in self._pages("list_thing_principals", "principals", thingName=t):
                certs.setdefault(p, []).append(t)
        if names is None and ca:
            for c in self._pages("list_certificates_by_ca", "certificates", caCertificateId=ca["certificateId"]):
                certs.setdefault(c["certificateArn"], [])
        if names is not None:  # certificates of these devices that lost their thing (a half-done teardown)
            for n in names:
                path = self.pki.device_dir(n) / "client.pem"
                if path.exists():
                    d = self._get("describe_certificate", certificateId=cert_id(load_cert(path)))
                    if d:
                        certs.setdefault(d["certificateDescription"]["certificateArn"], [])
        policies = []
        if names is None:
            policies = [p for p in policy_names(self.fleet).values() if self._get("get_policy", policyName=p)]
        return {"things": things, "certificates": certs, "policies": policies,
                "ca": ca["certificateId"] if (names is None and ca) else None}

    def _retire_cert(self, arn: str, things: List[str]) -> None:
        """Detach from things and policies, deactivate, delete: the order AWS requires."""
        cid = arn.rsplit("/", 1)[-1]
        for t in things:
            self._do("detach_thing_principal", f"detaching the certificate from {t}", thingName=t, principal=arn)
            self._did(f"detached certificate {cid[:12]}... from thing {t}")
        for p in self._pages("list_attached_policies", "policies", target=arn):
            self._do("detach_policy", f"detaching {p['policyName']}", policyName=p["policyName"], target=arn)
            self._did(f"detached policy {p['policyName']} from certificate {cid[:12]}...")
        d = self._get("describe_certificate", certificateId=cid)
        if d and d["certificateDescription"]["status"] == "ACTIVE":
            self._do("update_certificate", "deactivating the certificate", certificateId=cid, newStatus="INACTIVE")
            self._did(f"deactivated certificate {cid[:12]}...")
        if d:
            self._retry_conflict("delete_certificate", f"deleting certificate {cid[:12]}...", certificateId=cid)
            self._did(f"deleted certificate {cid[:12]}...")

    def _retry_conflict(self, op: str, doing: str, **kw) -> None:
        """Detaching is eventually consistent in AWS: a delete right after it may still see the attachment."""
        import botocore.exceptions as bx
        deadline = time.monotonic() + DETACH_WAIT_S
        delay = 0.5
        while True:
            try:
                self.call(op, **kw)
                return
            except bx.ClientError as e:
                c = self.code(e)
                if c in ("DeleteConflictException", "InvalidRequestException") and time.monotonic() < deadline:
                    self.progress(f"{doing}: AWS still sees an attachment, retrying in {delay:.1f} s")
                    self.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if c == "DeleteConflictException":
                    raise CommandError(f"{doing} failed: still attached ({e.response['Error'].get('Message', '')}); "
                                       "run 'sensorpub aws teardown' again in a minute") from None
                raise self.explain(e, doing) from None

    def teardown(self, plan: dict) -> None:
        for arn, things in plan["certificates"].items():
            self._retire_cert(arn, things)
        for t in plan["things"]:
            self._retry_conflict("delete_thing", f"deleting thing {t}", thingName=t)
            self._did(f"deleted thing {t}")
        for name in plan["policies"]:
            for target in self._pages("list_targets_for_policy", "targets", policyName=name):
                self._do("detach_policy", f"detaching {name}", policyName=name, target=target)
                self._did(f"detached policy {name} from {target.rsplit('/', 1)[-1][:12]}...")
            for v in self._do("list_policy_versions", "listing policy versions", policyName=name)["policyVersions"]:
                if not v["isDefaultVersion"]:
                    self._do("delete_policy_version", "deleting old policy versions", policyName=name,
                             policyVersionId=v["versionId"])
            self._retry_conflict("delete_policy", f"deleting policy {name}", policyName=name)
            self._did(f"deleted policy {name}")
        if plan["ca"]:
            d = self._get("describe_ca_certificate", certificateId=plan["ca"])
            if d and d["certificateDescription"]["status"] == "ACTIVE":
                self._do("update_ca_certificate", "deactivating the CA", certificateId=plan["ca"],
                         newStatus="INACTIVE")
                self._did("deactivated the fleet CA")
            self._retry_conflict("delete_ca_certificate", "deregistering the CA", certificateId=plan["ca"])
            self._did("deregistered the fleet CA")


def _json_or_none(text: Optional[str]):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def load_template(path: str) -> dict:
    p = Path(path)
    try:
        t = json.loads(p.read_text())
    except FileNotFoundError:
        raise CommandError(f"--jitp {p}: no such file; write one with 'sensorpub aws jitp-template > {p}'") from None
    except ValueError as e:
        raise CommandError(f"--jitp {p} is not valid JSON ({e}): fix it or regenerate it with "
                           "'sensorpub aws jitp-template'") from None
    if not isinstance(t, dict) or not isinstance(t.get("Resources"), dict):
        raise CommandError(f"--jitp {p} has no \"Resources\" object: it must be an AWS IoT provisioning template "
                           "(see 'sensorpub aws jitp-template')")
    return t
