"""The fleet's AWS IoT policy documents and JITP template, and the same rights as a Mosquitto ACL.

Pure data: nothing here talks to AWS. The local stand-in broker (`broker start --aws-policy`) gets
its ACL from `standin_acl`, rendered from the very documents `sensorpub aws` uploads.
"""
import json
from pathlib import Path
from typing import Dict, Optional

from ..contract import DEVICE_LEAVES, OPERATOR_LEAVES, ROOT, STATUS_LEAF
from ..errors import CommandError
from ..paths import VERIFIER_CN

THING = "${iot:Connection.Thing.ThingName}"
FLEET_ATTR = "sensorpub_fleet"
TOPIC_PREFIX = ROOT  # the AWS policies allow the board's default topic_prefix only


def policy_names(fleet: str) -> Dict[str, str]:
    return {"device": f"sensorpub-{fleet}-device", "verifier": f"sensorpub-{fleet}-verifier"}


def device_policy(arn_prefix: str) -> dict:
    """A device connects only as its own thing, publishes only its own two topics and reads only its own
    remote config and pushed certificate.

    `arn_prefix` is `arn:<partition>:iot:<region>:<account>`. iot:RetainPublish (status only)
    is there because the online/offline status and its Last Will are retained messages; the
    ConnectAttributes condition allows a Last Will but not a persistent session. iot:Subscribe is
    checked against topic filters, iot:Receive against topics."""
    own = f"{arn_prefix}:topic/{TOPIC_PREFIX}/{THING}"
    own_filter = f"{arn_prefix}:topicfilter/{TOPIC_PREFIX}/{THING}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ConnectAsItsThing", "Effect": "Allow", "Action": "iot:Connect",
             "Resource": f"{arn_prefix}:client/{THING}",
             "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"},
                           "ForAllValues:StringEquals": {"iot:ConnectAttributes": ["LastWill"]}}},
            {"Sid": "PublishItsReadingsAndStatus", "Effect": "Allow", "Action": "iot:Publish",
             "Resource": [f"{own}/{leaf}" for leaf in DEVICE_LEAVES]},
            {"Sid": "RetainItsStatus", "Effect": "Allow", "Action": "iot:RetainPublish",
             "Resource": f"{own}/{STATUS_LEAF}"},
            {"Sid": "SubscribeItsConfigAndCert", "Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": [f"{own_filter}/{leaf}" for leaf in OPERATOR_LEAVES]},
            {"Sid": "ReceiveItsConfigAndCert", "Effect": "Allow", "Action": "iot:Receive",
             "Resource": [f"{own}/{leaf}" for leaf in OPERATOR_LEAVES]},
        ],
    }


def verifier_policy(arn_prefix: str) -> dict:
    """The host-side verifier reads every device's topics and writes only remote configs and pushed certificates
    (it is the operator): retained, as the device reads them at every connection."""
    writes = [f"{arn_prefix}:topic/{TOPIC_PREFIX}/*/{leaf}" for leaf in OPERATOR_LEAVES]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ConnectAsVerifier", "Effect": "Allow", "Action": "iot:Connect",
             "Resource": f"{arn_prefix}:client/{VERIFIER_CN}-*"},
            {"Sid": "SubscribeDeviceTopics", "Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": f"{arn_prefix}:topicfilter/{TOPIC_PREFIX}/*"},
            {"Sid": "ReceiveDeviceTopics", "Effect": "Allow", "Action": "iot:Receive",
             "Resource": f"{arn_prefix}:topic/{TOPIC_PREFIX}/*"},
            {"Sid": "WriteConfigsAndCerts", "Effect": "Allow", "Action": ["iot:Publish", "iot:RetainPublish"],
             "Resource": writes},
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


def load_template(path: str) -> dict:
    """A JITP template file (--jitp), checked enough that a typo fails here and not inside AWS."""
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


def policy_to_acl(policy: dict, user: Optional[str] = None) -> str:
    """Mosquitto ACL lines with the same topic rights as an AWS IoT policy (used by the local stand-in).

    Publish becomes `write`, Subscribe/Receive become `read`; the thing-name variable becomes
    `%u` (the certificate CN, which is the thing name), a trailing `*` becomes `#` and a `*` level
    inside the topic becomes `+` (one level: a device name never holds a '/')."""
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
                topic = "/".join("+" if level == "*" else level for level in topic.split("/"))
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
