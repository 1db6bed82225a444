"""`sensorpub aws`: the fleet CA, devices and least-privilege policies in AWS IoT Core."""
import argparse
import json
import sys

from ..errors import CommandError
from .common import Parser, actions, add_aws_flags, add_fleet, aws_account, command, say

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
  sensorpub aws rule create --lambda arn:aws:lambda:eu-west-1:123456789012:function:readings
  sensorpub aws rule list
region and credentials come from --region/--profile or the usual AWS_REGION, AWS_PROFILE, ~/.aws files"""

ACTIONS = (("register-ca", "register the fleet CA (verification certificate from the registration code), ACTIVE"),
           ("register-device", "register a device: certificate ACTIVE, thing, fleet policy, attachments"),
           ("register-verifier", "register the verifier identity with its read-only policy"),
           ("endpoint", "print the account's iot:Data-ATS endpoint"),
           ("jitp-template", "print a just-in-time provisioning template for the fleet"),
           ("revoke", "mark a device's certificates REVOKED in AWS IoT (after 'sensorpub pki revoke')"),
           ("teardown", "delete devices (or the whole fleet) from AWS IoT, in the order AWS requires"),
           ("rule", "the fleet's topic rule: every telemetry reading to a Lambda function or a DynamoDB table"))

RULE_EPILOG = """examples:
  sensorpub aws rule create --lambda arn:aws:lambda:eu-west-1:123456789012:function:readings
  sensorpub aws rule create --dynamodb readings --role-arn arn:aws:iam::123456789012:role/sensorpub-readings
  sensorpub aws rule create --fleet site1 --lambda arn:aws:lambda:eu-west-1:123456789012:function:site1 --json
  sensorpub aws rule list            # every fleet's rule in the region; exit status 3 if this fleet has none
  sensorpub aws rule delete
the rule is named sensorpub_<fleet>_telemetry and runs SELECT * FROM 'devices/+/telemetry'; running create
again replaces it when it differs. A DynamoDB table needs partition key device_id (String), and sort key
seq (Number) to keep every reading; the role must trust iot.amazonaws.com and may dynamodb:PutItem on it.
Topics are not per fleet yet: every rule gets the readings of every device in the account and region."""

RULE_ACTIONS = (("create", "create the fleet's topic rule, or replace it when it differs (safe to re-run)"),
                ("list", "the topic rules of sensorpub in the region, every fleet's"),
                ("delete", "delete the fleet's topic rule and the Lambda permission it had"))


def argparse_aws(sub):
    p = command(sub, "aws", "register the fleet CA, devices and least-privilege policies with AWS IoT Core", EPILOG)
    for name, a in actions(p, ACTIONS).items():
        if name == "rule":  # --fleet and the AWS flags go on its actions: a parent's would be overwritten
            _argparse_rule(a)
            continue
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


def _argparse_rule(p) -> None:
    p.epilog = RULE_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    s = p.add_subparsers(dest="rule_action", required=True, metavar="ACTION", parser_class=Parser)
    for name, h in RULE_ACTIONS:
        a = s.add_parser(name, help=h, description=h, epilog=RULE_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        add_fleet(a)
        add_aws_flags(a)
        if name == "create":
            a.add_argument("--lambda", dest="lambda_arn", metavar="FUNCTION_ARN",
                           help="invoke this Lambda function with each reading (sensorpub lets AWS IoT invoke it, "
                                "for this rule only)")
            a.add_argument("--dynamodb", metavar="TABLE", help="write each reading as an item of this DynamoDB table "
                                                                "(in the same region)")
            a.add_argument("--role-arn", metavar="ROLE_ARN",
                           help="with --dynamodb: the IAM role AWS IoT writes with (trusts iot.amazonaws.com, may "
                                "dynamodb:PutItem on the table); sensorpub creates no roles")
        if name in ("create", "list"):
            a.add_argument("--json", action="store_true", help="print JSON for scripts")


def do_aws(args):
    from .. import aws
    if args.action == "rule":
        return _rule(args)
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
    lines = ([f"topic rule {plan['rule']}"] if plan.get("rule") else []) + \
            [f"thing {t}" for t in plan["things"]] + \
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


def _rule(args) -> int:
    from .. import aws
    if args.rule_action == "create":
        aws.check_rule_args(args.lambda_arn, args.dynamodb, args.role_arn)  # before credentials: a typo is said first
    a = aws_account(args)
    if args.rule_action == "create":
        r = a.rule_create(args.lambda_arn, args.dynamodb, args.role_arn)
        if args.json:
            print(json.dumps(dict(r, region=a.region, changes=a.actions), indent=1))
        else:
            done = {"created": "created", "replaced": "replaced: it differed"}.get(r["changed"] or "")
            print(f"topic rule {r['rule']} in {a.region}: {r['sql']} -> {aws.rule_targets(r)}"
                  + (f" ({done})" if done else " (already so: nothing changed)" if not a.actions else ""))
        return 0
    if args.rule_action == "delete":
        r = a.rule_delete()
        print(f"deleted topic rule {r['rule']} in {a.region} (it sent to {aws.rule_targets(r)})" if r else
              f"fleet {args.fleet!r} has no topic rule in {a.region}: nothing to delete")
        return 0
    rules = a.rule_list()
    if args.json:
        print(json.dumps(rules, indent=1))
    else:
        for r in rules:
            print(f"{r['rule']}  fleet {r['fleet']}  {'enabled' if r['enabled'] else 'DISABLED'}  "
                  f"{r['sql']} -> {aws.rule_targets(r)}")
    if not any(r["fleet"] == args.fleet for r in rules):
        say(f"fleet {args.fleet!r} has no topic rule in {a.region}: 'sensorpub aws rule create --fleet {args.fleet} "
            "--lambda FUNCTION_ARN' makes one")
        return 3
    return 0
