"""`sensorpub aws`: the fleet's own CA, its devices and least-privilege policies in AWS IoT Core.

Every step looks before it writes, so each command can be re-run: a re-run finds what exists
and changes nothing. Resources are named after the fleet (policies `sensorpub-<fleet>-device`
and `sensorpub-<fleet>-verifier`, things carry the attribute `sensorpub_fleet=<fleet>`, the topic
rule is `sensorpub_<fleet>_telemetry`), which is how `teardown --all` finds them.

client.py: boto3 client, retries, errors as one line | certs.py: certificate ids, Amazon Root CA 1
policies.py: policy documents, JITP template, stand-in ACL | registry.py: registering | teardown.py: deleting
rules.py: the fleet's topic rule (telemetry to Lambda or DynamoDB)

boto3 is an optional extra: importing this package does not need it; making a client does.
"""
import time
from typing import Callable, List, Optional

from .certs import ROOT_CA_FILE, ROOT_CA_SHA256, amazon_root_ca, cert_id, issued_by
from .client import MAX_ATTEMPTS, Iot, Progress, quiet, session_client
from .policies import TOPIC_PREFIX, device_policy, jitp_template, load_template, standin_acl
from .registry import Registry
from .rules import Clients, Rules, check_args as check_rule_args, rule_name, targets as rule_targets
from .teardown import plan_teardown as _plan_teardown, teardown as _teardown

__all__ = ["Aws", "session_client", "standin_acl", "amazon_root_ca", "ROOT_CA_FILE", "ROOT_CA_SHA256",
           "TOPIC_PREFIX", "MAX_ATTEMPTS", "load_template", "jitp_template", "device_policy",
           "cert_id", "issued_by", "check_rule_args", "rule_name", "rule_targets"]


def _default_clients(service: str, region: Optional[str]):
    return session_client(region, None, service)


class Aws:
    """The fleet in one account and region: what the CLI calls; the work is in registry.py and teardown.py."""

    def __init__(self, fleet: str, client, progress: Progress = quiet, sleep: Callable[[float], None] = time.sleep,
                 clients: Optional[Clients] = None):
        """`clients(service, region)`: the Lambda and DynamoDB clients a topic rule needs (default: the usual AWS
        configuration, in the IoT client's region unless given)."""
        self.fleet = fleet
        self.iot = Iot(client, progress, sleep)
        self._registry = Registry(fleet, self.iot)
        self._rules = Rules(fleet, self.iot, clients or (lambda s, r: _default_clients(s, r or self.region)))

    @property
    def client(self):
        return self.iot.client

    @property
    def region(self) -> str:
        return self.iot.region

    @property
    def actions(self) -> List[str]:
        """What this run changed, in order (empty: nothing changed)."""
        return self.iot.actions

    def register_ca(self, template: Optional[dict] = None, role_arn: Optional[str] = None) -> dict:
        return self._registry.register_ca(template, role_arn)

    def register_device(self, name: str) -> dict:
        return self._registry.register_device(name)

    def register_verifier(self) -> dict:
        return self._registry.register_verifier()

    def revoke_device(self, name: str) -> List[str]:
        return self._registry.revoke_device(name)

    def endpoint(self) -> str:
        return self._registry.endpoint()

    def is_registered(self, name: str) -> bool:
        return self._registry.is_registered(name)

    def rule_create(self, lambda_arn: Optional[str], table: Optional[str], role_arn: Optional[str]) -> dict:
        return self._rules.create(lambda_arn, table, role_arn)

    def rule_list(self) -> List[dict]:
        return self._rules.list()

    def rule_delete(self) -> Optional[dict]:
        return self._rules.delete()

    def plan_teardown(self, names: Optional[List[str]]) -> dict:
        return _plan_teardown(self.iot, self.fleet, names, self._rules)

    def teardown(self, plan: dict) -> None:
        _teardown(self.iot, plan, self._rules)
