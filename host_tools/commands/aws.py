"""`sensorpub aws`: the fleet CA, devices and least-privilege policies in AWS IoT Core."""
import json
import sys

from ..errors import CommandError
from .common import actions, add_aws_flags, add_fleet, aws_account, command

EPILOG = """examples:
  sensorpub aws register-ca --region eu-west-1
  sensorpub aws register-device dev1
  sensorpub aws register-verifier
  sensorpub aws endpoint
  sensorpub aws jitp-template > jitp.json
  sensorpub aws register-ca --jitp jitp.json --jitp-role arn:aws:iam::123456789012:role/sensorpub-jitp
  sensorpub aws revoke dev1     # after 'sensorpub pki revoke dev1'
  sensorpub aws teardown dev1 --yes
  sensorpub aws teardown --all
region and credentials come from --region/--profile or the usual AWS_REGION, AWS_PROFILE, ~/.aws files"""

ACTIONS = (("register-ca", "register the fleet CA (verification certificate from the registration code), ACTIVE"),
           ("register-device", "register a device: certificate ACTIVE, thing, fleet policy, attachments"),
           ("register-verifier", "register the verifier identity with its read-only policy"),
           ("endpoint", "print the account's iot:Data-ATS endpoint"),
           ("jitp-template", "print a just-in-time provisioning template for the fleet"),
           ("revoke", "mark a device's certificates REVOKED in AWS IoT (after 'sensorpub pki revoke')"),
           ("teardown", "delete devices (or the whole fleet) from AWS IoT, in the order AWS requires"))


def argparse_aws(sub):
    p = command(sub, "aws", "register the fleet CA, devices and least-privilege policies with AWS IoT Core", EPILOG)
    for name, a in actions(p, ACTIONS).items():
        add_fleet(a)
        if name != "jitp-template":
            add_aws_flags(a)
        if name == "register-ca":
            a.add_argument("--jitp", metavar="TEMPLATE.json",
                           help="enable just-in-time provisioning with this template ('aws jitp-template' writes one)")
            a.add_argument("--jitp-role", metavar="ARN",
                           help="with --jitp: IAM role AWS IoT assumes to provision (AWSIoTThingsRegistration)")
        if name == "register-device":
            a.add_argument("names", nargs="+", metavar="NAME", help="device name(s), as given to 'pki device'")
        if name == "revoke":
            a.add_argument("name", metavar="NAME", help="device name")
        if name == "teardown":
            a.add_argument("names", nargs="*", metavar="NAME", help="device name(s) to delete")
            a.add_argument("--all", action="store_true",
                           help="delete every device, certificate and policy of the fleet and deregister its CA")
            a.add_argument("--yes", action="store_true", help="do not ask before deleting")


def do_aws(args):
    from .. import aws
    if args.action == "jitp-template":
        print(json.dumps(aws.jitp_template(args.fleet), indent=2))
        return 0
    if args.action == "register-ca" and bool(args.jitp) != bool(args.jitp_role):
        raise CommandError("--jitp TEMPLATE.json and --jitp-role ARN go together: the role lets AWS IoT create the "
                           "thing (trust iot.amazonaws.com, managed policy AWSIoTThingsRegistration)")
    if args.action == "teardown" and bool(args.names) == bool(args.all):
        raise CommandError("say what to delete: device NAME(s) or --all")
    template = aws.load_template(args.jitp) if args.action == "register-ca" and args.jitp else None
    a = aws_account(args)
    if args.action == "register-ca":
        d = a.register_ca(template, args.jitp_role)
        print(f"fleet CA {d['certificateId']} is {d['status']} in {a.region}"
              + (" with just-in-time provisioning" if template else "")
              + ("" if a.actions else " (already registered: nothing changed)"))
    elif args.action == "register-device":
        for n in args.names:
            r = a.register_device(n)
            print(f"{n}: certificate {r['certificateId'][:12]}... ACTIVE, thing {r['thing']}, policy {r['policy']}")
        if not a.actions:
            print("already registered: nothing changed")
    elif args.action == "register-verifier":
        r = a.register_verifier()
        print(f"verifier: certificate {r['certificateId'][:12]}... ACTIVE, policy {r['policy']}"
              + ("" if a.actions else " (already registered: nothing changed)"))
    elif args.action == "endpoint":
        print(a.endpoint())
    elif args.action == "revoke":
        changed = a.revoke_device(args.name)
        print(f"{args.name}: {len(changed)} certificate(s) set REVOKED in {a.region}" if changed else
              f"{args.name}: no ACTIVE certificate of it in {a.region}: nothing changed")
    else:
        return _teardown(a, args)
    return 0


def _teardown(a, args) -> int:
    plan = a.plan_teardown(None if args.all else args.names)
    lines = [f"thing {t}" for t in plan["things"]] + \
            [f"certificate {c.rsplit('/', 1)[-1][:12]}..." for c in plan["certificates"]] + \
            [f"policy {p}" for p in plan["policies"]] + (["the fleet CA registration"] if plan["ca"] else [])
    if not lines:
        print(f"nothing of fleet {args.fleet!r} to delete in {a.region}")
        return 0
    print(f"in {a.region}, this deletes: " + ", ".join(lines))
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("not deleting without confirmation: pass --yes")
        if input("delete? [y/N] ").strip().lower() not in ("y", "yes"):
            raise CommandError("nothing deleted")
    a.teardown(plan)
    print(f"deleted {len(lines)} resources")
    return 0
