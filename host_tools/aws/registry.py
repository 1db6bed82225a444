"""Registering the fleet in AWS IoT: its CA, the two policies, device and verifier certificates, things.

Every step looks before it writes, so each command can be re-run: a re-run finds what exists and
changes nothing (`Iot.actions` stays empty).
"""
import json
from typing import List, Optional

from cryptography import x509

from ..errors import CommandError
from ..paths import VERIFIER_CN, check_name
from ..pki import Fleet, load_cert
from .certs import cert_id, fleet_ca, identity, pem, verification_certificate
from .client import Iot, error_code, error_message, explain
from .policies import FLEET_ATTR, device_policy, policy_names, verifier_policy
from .teardown import retire_cert


class Registry:
    """The fleet's resources in one account and region, created or updated on demand."""

    def __init__(self, fleet: str, iot: Iot):
        self.fleet = fleet
        self.iot = iot

    # --- CA -----------------------------------------------------------------------------------------

    def describe_ca(self) -> Optional[dict]:
        d = self.iot.get("describe_ca_certificate", certificateId=cert_id(fleet_ca(self.fleet)))
        if not d:
            return None
        return dict(d["certificateDescription"], registrationConfig=d.get("registrationConfig") or {})

    def require_ca(self) -> dict:
        d = self.describe_ca()
        region, fleet = self.iot.region, self.fleet
        if not d:
            raise CommandError(f"the fleet CA of {fleet!r} is not registered in {region}: run "
                               f"'sensorpub aws register-ca --fleet {fleet}' (with the same --region)")
        if d["status"] != "ACTIVE":
            raise CommandError(f"the fleet CA is registered in {region} but {d['status']}: run "
                               f"'sensorpub aws register-ca --fleet {fleet}' to activate it")
        return d

    def register_ca(self, template: Optional[dict] = None, role_arn: Optional[str] = None) -> dict:
        """The fleet CA ACTIVE (proved with a verification certificate); with a template, JITP enabled."""
        iot = self.iot
        d = self.describe_ca()
        if d:
            iot.progress(f"the fleet CA is already registered in {iot.region} ({d['certificateId'][:12]}..., "
                         f"{d['status']})")
            if d["status"] != "ACTIVE":
                iot.do("update_ca_certificate", "activating the CA", certificateId=d["certificateId"],
                       newStatus="ACTIVE")
                iot.did("set the CA ACTIVE")
        else:
            self._register_new_ca(template, role_arn)
            d = self.require_ca()
        if template is not None:
            self.ensure_policy("device", d["certificateArn"])
            cfg = d["registrationConfig"]
            if d.get("autoRegistrationStatus", "ENABLE") != "ENABLE" or cfg.get("roleArn") != role_arn or \
                    _json_or_none(cfg.get("templateBody")) != template:
                iot.do("update_ca_certificate", "enabling auto-registration", certificateId=d["certificateId"],
                       newAutoRegistrationStatus="ENABLE",
                       registrationConfig={"templateBody": json.dumps(template), "roleArn": role_arn})
                iot.did("enabled just-in-time provisioning with the template")
        return self.require_ca()

    def _register_new_ca(self, template: Optional[dict], role_arn: Optional[str]) -> None:
        import botocore.exceptions as bx
        iot = self.iot
        ca_cert, ca_key = Fleet(self.fleet).require_ca()
        code = iot.do("get_registration_code", "getting the registration code")["registrationCode"]
        iot.progress(f"registration code {code}: signing a verification certificate with the fleet CA")
        ver = verification_certificate(ca_cert, ca_key, code)
        kw = {"caCertificate": pem(ca_cert), "verificationCertificate": pem(ver), "setAsActive": True}
        if template is not None:
            kw.update(allowAutoRegistration=True,
                      registrationConfig={"templateBody": json.dumps(template), "roleArn": role_arn})
        try:
            iot.call("register_ca_certificate", **kw)
        except bx.ClientError as e:
            c = error_code(e)
            if c == "ResourceAlreadyExistsException":
                raise CommandError(f"the fleet CA is already registered by another AWS account in {iot.region} "
                                   "(a CA can be registered by one account per region): deregister it there "
                                   "('sensorpub aws teardown --all' with that account's credentials) or make a "
                                   "new fleet") from None
            if c in ("RegistrationCodeValidationException", "CertificateValidationException"):
                raise CommandError(f"AWS refused the fleet CA or its verification certificate ({c}: "
                                   f"{error_message(e)}): run the command again; if it persists, check the CA "
                                   "with 'sensorpub pki list'") from None
            raise explain(e, "registering the CA") from None
        iot.did(f"registered the fleet CA in {iot.region} and set it ACTIVE")

    # --- policies -----------------------------------------------------------------------------------

    def ensure_policy(self, role: str, any_arn: str) -> str:
        """Create the fleet's policy once; a changed document becomes the new default version."""
        iot = self.iot
        name = policy_names(self.fleet)[role]
        prefix = ":".join(any_arn.split(":")[:5])
        doc = (device_policy if role == "device" else verifier_policy)(prefix)
        got = iot.get("get_policy", policyName=name)
        if not got:
            iot.do("create_policy", f"creating policy {name}", policyName=name, policyDocument=json.dumps(doc))
            iot.did(f"created policy {name}")
        elif json.loads(got["policyDocument"]) != doc:
            versions = iot.do("list_policy_versions", "listing policy versions", policyName=name)["policyVersions"]
            for v in versions:
                if not v["isDefaultVersion"]:
                    iot.do("delete_policy_version", "pruning old policy versions", policyName=name,
                           policyVersionId=v["versionId"])
            iot.do("create_policy_version", f"updating policy {name}", policyName=name,
                   policyDocument=json.dumps(doc), setAsDefault=True)
            iot.did(f"updated policy {name} to the current document")
        return name

    def _attach_policy(self, name: str, cert_arn: str) -> None:
        attached = [p["policyName"] for p in self.iot.pages("list_attached_policies", "policies", target=cert_arn)]
        if name not in attached:
            self.iot.do("attach_policy", f"attaching {name}", policyName=name, target=cert_arn)
            self.iot.did(f"attached policy {name} to the certificate")

    # --- certificates and things --------------------------------------------------------------------

    def _ensure_cert(self, cert: x509.Certificate, label: str) -> str:
        import botocore.exceptions as bx
        iot = self.iot
        cid = cert_id(cert)
        d = iot.get("describe_certificate", certificateId=cid)
        if d:
            desc = d["certificateDescription"]
            if desc["status"] != "ACTIVE":
                if desc["status"] == "REVOKED":
                    raise CommandError(f"the certificate of {label} is REVOKED in AWS: issue a new one with "
                                       f"'sensorpub pki device {label} --force' and register again")
                iot.do("update_certificate", "activating the certificate", certificateId=cid, newStatus="ACTIVE")
                iot.did(f"set the certificate of {label} ACTIVE")
            return desc["certificateArn"]
        try:
            r = iot.call("register_certificate", certificatePem=pem(cert), caCertificatePem=pem(fleet_ca(self.fleet)),
                         status="ACTIVE")
        except bx.ClientError as e:
            if error_code(e) in ("CertificateValidationException", "CertificateConflictException"):
                raise CommandError(f"AWS did not accept the certificate of {label} as issued by the registered fleet "
                                   f"CA ({error_code(e)}: {error_message(e)}): re-issue it with "
                                   f"'sensorpub pki device {label} --force'") from None
            raise explain(e, f"registering the certificate of {label}") from None
        iot.did(f"registered the certificate of {label} ({cid[:12]}...) and set it ACTIVE")
        return r["certificateArn"]

    def register_device(self, name: str) -> dict:
        """Certificate ACTIVE, thing tagged with the fleet, fleet policy and certificate attached."""
        iot = self.iot
        check_name("device", name)
        cert = identity(self.fleet, name)
        self.require_ca()
        arn = self._ensure_cert(cert, name)
        thing = iot.get("describe_thing", thingName=name)
        if thing:
            owner = thing.get("attributes", {}).get(FLEET_ATTR)
            if owner != self.fleet:
                raise CommandError(f"a thing named {name!r} already exists in {iot.region} and is not in fleet "
                                   f"{self.fleet!r} ({FLEET_ATTR}={owner}): choose another device name or delete it")
        else:
            iot.do("create_thing", f"creating thing {name}", thingName=name,
                   attributePayload={"attributes": {FLEET_ATTR: self.fleet}})
            iot.did(f"created thing {name}")
        policy = self.ensure_policy("device", arn)
        self._attach_policy(policy, arn)
        principals = iot.pages("list_thing_principals", "principals", thingName=name)
        if arn not in principals:
            iot.do("attach_thing_principal", "attaching the certificate to the thing", thingName=name, principal=arn)
            iot.did(f"attached the certificate to thing {name}")
        for old in principals:  # an earlier certificate of this device (re-issued with --force): retire it
            if old != arn:
                iot.progress(f"retiring an older certificate of {name}: {old.rsplit('/', 1)[-1][:12]}...")
                retire_cert(iot, old, [name])
        return {"thing": name, "certificateArn": arn, "certificateId": cert_id(cert), "policy": policy}

    def register_verifier(self) -> dict:
        cert = identity(self.fleet, VERIFIER_CN)
        self.require_ca()
        arn = self._ensure_cert(cert, "the verifier")
        policy = self.ensure_policy("verifier", arn)
        self._attach_policy(policy, arn)
        return {"certificateArn": arn, "certificateId": cert_id(cert), "policy": policy}

    def revoke_device(self, name: str) -> List[str]:
        """Mark every certificate of the device that AWS knows (the current one and earlier ones in history/)
        REVOKED, so AWS refuses them as the local CRL does. Returns the certificate ids changed."""
        d = Fleet(self.fleet).device_dir(name)
        paths = [d / "client.pem", *sorted((d / "history").glob("*.pem"))]
        if not paths[0].exists():
            raise CommandError(f"no device {name!r} in fleet {self.fleet!r}: nothing to revoke")
        changed = []
        for p in paths:
            cid = cert_id(load_cert(p))
            desc = self.iot.get("describe_certificate", certificateId=cid)
            if desc and desc["certificateDescription"]["status"] != "REVOKED":
                self.iot.do("update_certificate", f"revoking certificate {cid[:12]}...", certificateId=cid,
                            newStatus="REVOKED")
                self.iot.did(f"set certificate {cid[:12]}... of {name} REVOKED")
                changed.append(cid)
        return changed

    def endpoint(self) -> str:
        return self.iot.do("describe_endpoint", "looking up the endpoint",
                           endpointType="iot:Data-ATS")["endpointAddress"]

    def is_registered(self, name: str) -> bool:
        d = self.iot.get("describe_certificate", certificateId=cert_id(identity(self.fleet, name)))
        return bool(d and d["certificateDescription"]["status"] == "ACTIVE")


def _json_or_none(text: Optional[str]):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
