"""Deleting from AWS IoT in the order it requires: detach, deactivate, delete (the fleet's topic rule first:
nothing depends on it, and it stops forwarding before the devices go).

Detaching is eventually consistent in AWS, so a delete right after it may still see the attachment
(DeleteConflictException): `delete_when_detached` waits that out for up to DETACH_WAIT_S. That wait
is about consistency, not throttling; throttling is botocore's to retry (see client.py).
"""
import time
from typing import Dict, List, Optional

from ..errors import CommandError
from ..paths import check_name
from ..pki import Fleet, load_cert
from .certs import cert_id, fleet_ca
from .client import Iot, error_code, error_message, explain
from .policies import FLEET_ATTR, policy_names
from .rules import Rules

DETACH_WAIT_S = 30.0


def delete_when_detached(iot: Iot, op: str, doing: str, **kw) -> None:
    """A delete call, repeated (with back-off) while AWS still sees an attachment just removed."""
    import botocore.exceptions as bx  # boto3 is an optional extra: imported only when AWS is used
    deadline = time.monotonic() + DETACH_WAIT_S
    delay = 0.5
    while True:
        try:
            iot.call(op, **kw)
            return
        except bx.ClientError as e:
            c = error_code(e)
            if c in ("DeleteConflictException", "InvalidRequestException") and time.monotonic() < deadline:
                iot.progress(f"{doing}: AWS still sees an attachment, retrying in {delay:.1f} s")
                iot.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if c == "DeleteConflictException":
                raise CommandError(f"{doing} failed: still attached ({error_message(e)}); "
                                   "run 'sensorpub aws teardown' again in a minute") from None
            raise explain(e, doing) from None


def retire_cert(iot: Iot, arn: str, things: List[str]) -> None:
    """Detach a certificate from things and policies, deactivate it, delete it."""
    cid = arn.rsplit("/", 1)[-1]
    for t in things:
        iot.do("detach_thing_principal", f"detaching the certificate from {t}", thingName=t, principal=arn)
        iot.did(f"detached certificate {cid[:12]}... from thing {t}")
    for p in iot.pages("list_attached_policies", "policies", target=arn):
        iot.do("detach_policy", f"detaching {p['policyName']}", policyName=p["policyName"], target=arn)
        iot.did(f"detached policy {p['policyName']} from certificate {cid[:12]}...")
    d = iot.get("describe_certificate", certificateId=cid)
    if d and d["certificateDescription"]["status"] == "ACTIVE":
        iot.do("update_certificate", "deactivating the certificate", certificateId=cid, newStatus="INACTIVE")
        iot.did(f"deactivated certificate {cid[:12]}...")
    if d:
        delete_when_detached(iot, "delete_certificate", f"deleting certificate {cid[:12]}...", certificateId=cid)
        iot.did(f"deleted certificate {cid[:12]}...")


def plan_teardown(iot: Iot, fleet: str, names: Optional[List[str]], rules: Optional[Rules] = None) -> dict:
    """What teardown would delete: names=None means the whole fleet (and its topic rule, given `rules`).
    Looks only; changes nothing."""
    ca = iot.get("describe_ca_certificate", certificateId=cert_id(fleet_ca(fleet)))
    ca_id = ca["certificateDescription"]["certificateId"] if ca else None
    if names is None:
        things = [t["thingName"] for t in iot.pages("list_things", "things", attributeName=FLEET_ATTR,
                                                     attributeValue=fleet)]
    else:
        things = []
        for n in names:
            t = iot.get("describe_thing", thingName=check_name("device", n))
            if t and t.get("attributes", {}).get(FLEET_ATTR) == fleet:
                things.append(n)
            elif t:
                raise CommandError(f"thing {n!r} is not in fleet {fleet!r}: not deleting it")
    certs: Dict[str, List[str]] = {}
    for t in things:
        for p in iot.pages("list_thing_principals", "principals", thingName=t):
            certs.setdefault(p, []).append(t)
    if names is None and ca_id:
        for c in iot.pages("list_certificates_by_ca", "certificates", caCertificateId=ca_id):
            certs.setdefault(c["certificateArn"], [])
    if names is not None:  # certificates of these devices that lost their thing (a half-done teardown)
        for n in names:
            path = Fleet(fleet).device_dir(n) / "client.pem"
            if path.exists():
                d = iot.get("describe_certificate", certificateId=cert_id(load_cert(path)))
                if d:
                    certs.setdefault(d["certificateDescription"]["certificateArn"], [])
    policies = []
    if names is None:
        policies = [p for p in policy_names(fleet).values() if iot.get("get_policy", policyName=p)]
    rule = rules.name if names is None and rules is not None and rules.ours() else None  # another's: not ours to delete
    return {"things": things, "certificates": certs, "policies": policies,
            "ca": ca_id if names is None else None, "rule": rule}


def teardown(iot: Iot, plan: dict, rules: Optional[Rules] = None) -> None:
    """Delete what `plan_teardown` found: the topic rule (and its Lambda permission), certificates, things,
    policies, then the CA registration."""
    if plan.get("rule") and rules is not None:
        rules.delete()
    for arn, things in plan["certificates"].items():
        retire_cert(iot, arn, things)
    for t in plan["things"]:
        delete_when_detached(iot, "delete_thing", f"deleting thing {t}", thingName=t)
        iot.did(f"deleted thing {t}")
    for name in plan["policies"]:
        for target in iot.pages("list_targets_for_policy", "targets", policyName=name):
            iot.do("detach_policy", f"detaching {name}", policyName=name, target=target)
            iot.did(f"detached policy {name} from {target.rsplit('/', 1)[-1][:12]}...")
        for v in iot.do("list_policy_versions", "listing policy versions", policyName=name)["policyVersions"]:
            if not v["isDefaultVersion"]:
                iot.do("delete_policy_version", "deleting old policy versions", policyName=name,
                       policyVersionId=v["versionId"])
        delete_when_detached(iot, "delete_policy", f"deleting policy {name}", policyName=name)
        iot.did(f"deleted policy {name}")
    if plan["ca"]:
        d = iot.get("describe_ca_certificate", certificateId=plan["ca"])
        if d and d["certificateDescription"]["status"] == "ACTIVE":
            iot.do("update_ca_certificate", "deactivating the CA", certificateId=plan["ca"], newStatus="INACTIVE")
            iot.did("deactivated the fleet CA")
        delete_when_detached(iot, "delete_ca_certificate", "deregistering the CA", certificateId=plan["ca"])
        iot.did("deregistered the fleet CA")
