"""The fleet's topic rule: every telemetry reading to a Lambda function and/or a DynamoDB table.

The managed equivalent of a bridge. AWS IoT runs the rule's SQL (`SELECT * FROM 'devices/+/telemetry'`, from
contract.py) on every message and hands each reading, unchanged, to the rule's actions. One rule per fleet,
named after it (`sensorpub_<fleet>_telemetry`, '-' written '_': rule names allow letters, digits and '_' only);
its description names the fleet, which is how a rule is told to be ours.

A Lambda action also needs a statement in the function's resource policy that lets iot.amazonaws.com invoke
it, for this rule (SourceArn) and account only: added here, removed with the rule. A DynamoDB (DynamoDBv2)
action writes with an IAM role the user gives: no role is ever created here.

AWS answers GetTopicRule for a rule that does not exist with UnauthorizedException, not
ResourceNotFoundException, so a rule is looked up in ListTopicRules first and only then read.
"""
import json
import re
from typing import Callable, Dict, List, Optional

from ..contract import ID_FIELD, SEQ_FIELD, TELEMETRY
from ..errors import CommandError
from .client import Iot, error_code, error_message, explain

SQL = f"SELECT * FROM '{TELEMETRY}'"  # the payload carries device_id: nothing to add from the topic
SQL_VERSION = "2016-03-23"  # the newest; AWS would otherwise pick 2015-10-08
PREFIX = "sensorpub_"
IOT_PRINCIPAL = "iot.amazonaws.com"
INVOKE = "lambda:InvokeFunction"
# The table key a reading can fill: DynamoDBv2 writes each JSON field as an attribute (string S, number N).
# device_id alone keeps the newest reading per device; with seq as sort key, every reading.
TABLE_KEY = {ID_FIELD: ("HASH", "S"), SEQ_FIELD: ("RANGE", "N")}
TABLE_FIX = f"create it with partition key {ID_FIELD} (String) and sort key {SEQ_FIELD} (Number)"

LAMBDA_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:([a-z0-9-]+):(\d{12}):function:[A-Za-z0-9_-]{1,64}"
                        r"(:[A-Za-z0-9_$-]{1,128})?$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_OWNER = re.compile(r"^sensorpub fleet (\S+):")

Clients = Callable[[str, Optional[str]], object]  # (service, region or None for the rule's) -> a boto3 client


def rule_name(fleet: str) -> str:
    return f"{PREFIX}{fleet.replace('-', '_')}_telemetry"


def statement_id(fleet: str) -> str:
    """The Sid of the statement in the Lambda function's policy that lets the fleet's rule invoke it."""
    return f"sensorpub-{fleet}-rule"


def check_args(lambda_arn: Optional[str], table: Optional[str], role_arn: Optional[str]) -> None:
    """The flags of `aws rule create`, checked before anything reaches AWS: one line naming the flag and the fix."""
    if not lambda_arn and not table:
        raise CommandError("say where the readings go: --lambda FUNCTION_ARN, or --dynamodb TABLE --role-arn ROLE_ARN "
                           "(or both)")
    if lambda_arn and not LAMBDA_ARN.match(lambda_arn):
        raise CommandError(f"--lambda {lambda_arn!r} is not a Lambda function ARN: give one like "
                           "arn:aws:lambda:eu-west-1:123456789012:function:NAME ('aws lambda list-functions')")
    if table and not TABLE_NAME.match(table):
        raise CommandError(f"--dynamodb {table!r} is not a DynamoDB table name: 3-255 letters, digits, '_', '-' or '.'")
    if table and not role_arn:
        raise CommandError("--dynamodb needs --role-arn ROLE_ARN: an IAM role that trusts iot.amazonaws.com and may "
                           "dynamodb:PutItem on the table (sensorpub creates no IAM roles)")
    if role_arn and not table:
        raise CommandError("--role-arn is for --dynamodb: a Lambda action needs no role (sensorpub adds the "
                           "function's permission for the rule)")
    if role_arn and not ROLE_ARN.match(role_arn):
        raise CommandError(f"--role-arn {role_arn!r} is not an IAM role ARN: give one like "
                           "arn:aws:iam::123456789012:role/NAME")


def payload(fleet: str, lambda_arn: Optional[str], table: Optional[str], role_arn: Optional[str]) -> dict:
    """The rule as AWS IoT stores it (TopicRulePayload)."""
    actions: List[dict] = []
    if lambda_arn:
        actions.append({"lambda": {"functionArn": lambda_arn}})
    if table:
        actions.append({"dynamoDBv2": {"roleArn": role_arn, "putItem": {"tableName": table}}})
    return {"sql": SQL, "description": f"sensorpub fleet {fleet}: every telemetry reading of the fleet's devices",
            "actions": actions, "ruleDisabled": False, "awsIotSqlVersion": SQL_VERSION}


def owner(rule: dict) -> Optional[str]:
    """The fleet a rule (as GetTopicRule returns it) belongs to; None: not sensorpub's."""
    m = _OWNER.match(rule.get("description") or "")
    return m.group(1) if m else None


def summary(got: dict) -> dict:
    """A rule (GetTopicRule's answer) as sensorpub prints it, and as `--json` gives it."""
    rule = got["rule"]
    out: Dict = {"rule": rule["ruleName"], "fleet": owner(rule), "arn": got.get("ruleArn"), "sql": rule["sql"],
                 "enabled": not rule.get("ruleDisabled", False), "lambda": None, "dynamodb": None, "role_arn": None}
    for a in rule.get("actions", []):
        if "lambda" in a:
            out["lambda"] = a["lambda"]["functionArn"]
        if "dynamoDBv2" in a:
            out["dynamodb"] = a["dynamoDBv2"]["putItem"]["tableName"]
            out["role_arn"] = a["dynamoDBv2"]["roleArn"]
    return out


def targets(s: dict) -> str:
    """Where a rule sends, in words: 'Lambda arn:...', 'DynamoDB table T (role arn:...)'."""
    parts = ([f"Lambda {s['lambda']}"] if s["lambda"] else []) + \
            ([f"DynamoDB table {s['dynamodb']} (role {s['role_arn']})"] if s["dynamodb"] else [])
    return " and ".join(parts) or "nothing"


def _function_region(arn: str) -> str:
    return arn.split(":")[3]


class Rules:
    """The fleet's topic rule in one account and region, with the Lambda permission it needs."""

    def __init__(self, fleet: str, iot: Iot, clients: Clients):
        self.fleet = fleet
        self.name = rule_name(fleet)
        self.iot = iot
        self._clients = clients
        self._others: Dict[tuple, Iot] = {}

    def _other(self, service: str, region: Optional[str] = None) -> Iot:
        """The Lambda or DynamoDB client of this run (made once per service and region)."""
        key = (service, region or self.iot.region)
        if key not in self._others:
            self._others[key] = self.iot.sibling(self._clients(service, key[1]))
        return self._others[key]

    # --- reading ------------------------------------------------------------------------------------

    def _names(self) -> List[str]:
        return [r["ruleName"] for r in self.iot.pages("list_topic_rules", "rules")]

    def _read(self, name: str) -> Optional[dict]:
        return self.iot.get("get_topic_rule", ruleName=name)

    def ours(self) -> Optional[dict]:
        """The fleet's rule (GetTopicRule's answer), or None: there is none, or the rule of that name is not ours."""
        if self.name not in self._names():
            return None
        got = self._read(self.name)
        return got if got and owner(got["rule"]) == self.fleet else None

    def get(self) -> Optional[dict]:
        """The fleet's rule (GetTopicRule's answer) or None; a rule of that name that is not ours is refused."""
        if self.name not in self._names():
            return None
        got = self._read(self.name)
        if got and owner(got["rule"]) != self.fleet:
            raise CommandError(f"a topic rule named {self.name} exists in {self.iot.region} and is not fleet "
                               f"{self.fleet!r}'s (its description: {got['rule'].get('description')!r}): delete it "
                               "or use another fleet name")
        return got

    def list(self) -> List[dict]:
        """Every sensorpub rule in the region, each fleet's: they all take the same topics (see the README)."""
        out = []
        for name in self._names():
            if name.startswith(PREFIX):
                got = self._read(name)
                if got and owner(got["rule"]):
                    out.append(summary(got))
        return out

    # --- writing ------------------------------------------------------------------------------------

    def create(self, lambda_arn: Optional[str], table: Optional[str], role_arn: Optional[str]) -> dict:
        """The fleet's rule with these actions: created, replaced if it differs, left alone if it does not.
        Returns its summary with "changed": what was done (created / replaced / None)."""
        check_args(lambda_arn, table, role_arn)
        if lambda_arn:
            self._check_function(lambda_arn)
        if table:
            self._check_table(table)
        want = payload(self.fleet, lambda_arn, table, role_arn)
        now = targets(summary({"rule": dict(want, ruleName=self.name)}))
        old = self.get()
        changed = None
        if old is None:
            self._put("create_topic_rule", want, "creating")
            changed = "created"
            self.iot.did(f"created topic rule {self.name}: {SQL} -> {now}")
        elif _differs(old["rule"], want):
            self._put("replace_topic_rule", want, "replacing")
            changed = "replaced"
            self.iot.did(f"replaced topic rule {self.name} (it sent to {targets(summary(old))}) -> {now}")
        got = self._read(self.name)
        if got is None:
            raise CommandError(f"topic rule {self.name} is not in {self.iot.region} right after it was written: run "
                               "the same command again (it is safe to re-run)")
        before = summary(old)["lambda"] if old else None
        if before and before != lambda_arn:
            self._revoke_invoke(before)
        if lambda_arn:
            self._allow_invoke(lambda_arn, got["ruleArn"])
        self._warn_shared()
        return dict(summary(got), changed=changed)

    def delete(self) -> Optional[dict]:
        """Delete the fleet's rule and the Lambda permission it had; None when there was none."""
        old = self.get()
        if old is None:
            return None
        s = summary(old)
        self.iot.do("delete_topic_rule", f"deleting topic rule {self.name}", ruleName=self.name)
        self.iot.did(f"deleted topic rule {self.name}")
        if s["lambda"]:
            self._revoke_invoke(s["lambda"])
        return s

    def _put(self, op: str, want: dict, doing: str) -> None:
        import botocore.exceptions as bx
        try:
            self.iot.call(op, ruleName=self.name, topicRulePayload=want)
        except bx.ClientError as e:
            if error_code(e) in ("InvalidRequestException", "SqlParseException"):
                raise CommandError(f"AWS IoT refused topic rule {self.name} ({error_code(e)}: {error_message(e)}): "
                                   "check --role-arn (it must trust iot.amazonaws.com, and you need iam:PassRole on "
                                   "it) and --lambda") from None
            raise explain(e, f"{doing} topic rule {self.name}") from None

    def _warn_shared(self) -> None:
        others = [s for s in self.list() if s["fleet"] != self.fleet]
        for s in others:
            self.iot.progress(f"note: topic rule {s['rule']} of fleet {s['fleet']!r} takes the same topic {TELEMETRY}: "
                              "topics are not per fleet yet, so both rules get every device's readings in "
                              f"{self.iot.region}")

    # --- the targets --------------------------------------------------------------------------------

    def _check_function(self, arn: str) -> None:
        region = _function_region(arn)
        lam = self._other("lambda", region)
        if lam.get("get_function_configuration", FunctionName=arn) is None:
            raise CommandError(f"--lambda {arn}: no such function in {region}: create it first, or check the ARN "
                               "('aws lambda list-functions --region " + region + "')")

    def _check_table(self, table: str) -> None:
        region = self.iot.region
        d = self._other("dynamodb").get("describe_table", TableName=table)
        if d is None:
            raise CommandError(f"--dynamodb {table}: no such table in {region} (a rule writes to its own region's "
                               f"tables): {TABLE_FIX}, or check --region")
        types = {a["AttributeName"]: a["AttributeType"] for a in d["Table"].get("AttributeDefinitions", [])}
        keys = {k["AttributeName"]: k["KeyType"] for k in d["Table"]["KeySchema"]}
        for name, kind in keys.items():
            if TABLE_KEY.get(name, (None, None)) != (kind, types.get(name)):
                role = "partition" if kind == "HASH" else "sort"
                raise CommandError(f"--dynamodb {table}: its {role} key {name} ({types.get(name)}) is not one a "
                                   f"reading fills, so AWS IoT could not write a single reading: {TABLE_FIX}")
        if SEQ_FIELD not in keys:
            self.iot.progress(f"note: table {table} is keyed by {ID_FIELD} alone: each reading replaces its device's "
                              f"previous one (a sort key {SEQ_FIELD} (Number) keeps them all)")

    def _statement(self, function_arn: str) -> Optional[dict]:
        lam = self._other("lambda", _function_region(function_arn))
        got = lam.get("get_policy", FunctionName=function_arn)  # None: no policy at all (or no function)
        if not got:
            return None
        stmts = json.loads(got["Policy"]).get("Statement", [])
        return next((s for s in stmts if s.get("Sid") == statement_id(self.fleet)), None)

    def _allow_invoke(self, function_arn: str, rule_arn: str) -> None:
        """The function's policy lets AWS IoT invoke it for this rule (SourceArn) and this account only."""
        account = rule_arn.split(":")[4]
        st = self._statement(function_arn)
        cond = (st or {}).get("Condition", {})
        if st and cond.get("ArnLike", {}).get("AWS:SourceArn") == rule_arn and \
                cond.get("StringEquals", {}).get("AWS:SourceAccount") == account and \
                st.get("Principal", {}).get("Service") == IOT_PRINCIPAL and st.get("Action") == INVOKE:
            return
        lam = self._other("lambda", _function_region(function_arn))
        sid = statement_id(self.fleet)
        if st:  # ours, but not as it should be: a statement id cannot be added twice
            lam.do("remove_permission", f"replacing permission {sid}", FunctionName=function_arn, StatementId=sid)
        lam.do("add_permission", f"letting AWS IoT invoke {function_arn}", FunctionName=function_arn,
               StatementId=sid, Action=INVOKE, Principal=IOT_PRINCIPAL, SourceArn=rule_arn, SourceAccount=account)
        lam.did(f"let AWS IoT invoke {function_arn} for rule {self.name} (permission {sid})")

    def _revoke_invoke(self, function_arn: str) -> None:
        """Remove our statement from a function the rule no longer sends to (gone already: nothing to do)."""
        if self._statement(function_arn) is None:
            return
        sid = statement_id(self.fleet)
        lam = self._other("lambda", _function_region(function_arn))
        if lam.get("remove_permission", FunctionName=function_arn, StatementId=sid) is not None:
            lam.did(f"removed permission {sid} from {function_arn}")


def _differs(have: dict, want: dict) -> bool:
    return any(have.get(k) != v for k, v in want.items())
