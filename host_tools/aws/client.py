"""The AWS IoT client: the boto3 session, and every API call ending in its result or one clear line.

Retrying is botocore's alone (configured in `session_client`): `Iot.call` makes one botocore call,
which retries throttling and transient failures itself; what is left after that is either a
ClientError for the caller to judge or a one-line CommandError naming the fix.
"""
import os
import time
from typing import Callable, List, Optional

from ..errors import CommandError

Progress = Callable[[str], None]

# Requests per API call, the first included. Standard mode, not adaptive: standard backs off with full
# jitter (1 s doubling, capped at 20 s, so at most ~31 s over 5 retries) on throttling codes, 429/5xx and
# dropped connections, within a per-client retry budget. Adaptive adds a client-side rate limiter that
# botocore documents as experimental and that pays off for sustained high-rate traffic; these commands
# make a few dozen sequential calls. `total_max_attempts`, because Config's `max_attempts` counts retries.
MAX_ATTEMPTS = 6
# error codes that mean botocore gave up retrying a throttled (or briefly unavailable) call
THROTTLED = ("Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
             "ServiceUnavailableException")
NO_CREDENTIALS = ("no AWS credentials: set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY, or run 'aws configure'")
BAD_CREDENTIALS = ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
                   "InvalidSignatureException")
DENIED = ("AccessDeniedException", "AccessDenied", "UnauthorizedException")


def quiet(_msg: str) -> None:
    pass


_LOADER = None  # botocore's reader of its JSON models and endpoints, shared by every session in this process


def _botocore_session():
    """A new botocore session that reuses the process's data loader: a fresh one parses the same JSON files
    again (about 0.15 s of CPU per session; a command makes one per service, the tests one per call)."""
    import botocore.session
    global _LOADER
    bs = botocore.session.Session()
    if _LOADER is None:
        _LOADER = bs.get_component("data_loader")
    else:
        bs.register_component("data_loader", _LOADER)
    return bs


def session_client(region: Optional[str] = None, profile: Optional[str] = None, service: str = "iot"):
    """A boto3 client (IoT, or the Lambda and DynamoDB a topic rule sends to), with the usual AWS configuration
    and a clear line for each way it can be missing."""
    import boto3
    import botocore.config
    import botocore.exceptions as bx
    wanted = profile if profile is not None else os.environ.get("AWS_PROFILE")
    try:
        s = boto3.Session(profile_name=profile, region_name=region, botocore_session=_botocore_session())
        paths = _LOADER.search_paths  # boto3 adds its own data folder to the loader each time: once is enough
        paths[:] = list(dict.fromkeys(paths))
        if wanted and wanted not in s.available_profiles:
            raise bx.ProfileNotFound(profile=wanted)
    except bx.ProfileNotFound:
        raise CommandError(f"AWS profile {wanted!r} is not in ~/.aws/config: check --profile/AWS_PROFILE "
                           "('aws configure list-profiles' lists them)") from None
    r = s.region_name
    if not r:
        raise CommandError("no AWS region: pass --region (e.g. --region eu-west-1) or set AWS_REGION")
    known = set()
    for part in s.get_available_partitions():
        known.update(s.get_available_regions(service, part))
    if known and r not in known:
        what = "AWS IoT Core" if service == "iot" else f"AWS {service}"
        raise CommandError(f"region {r!r} has no {what}: check --region/AWS_REGION "
                           f"(e.g. {', '.join(sorted(known)[:4])}, ...)")
    try:
        creds = s.get_credentials()
    except bx.BotoCoreError as e:
        raise CommandError(f"cannot load AWS credentials: {e}") from None
    if creds is None:
        raise CommandError(NO_CREDENTIALS)
    cfg = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                                 connect_timeout=10, read_timeout=30)
    return s.client(service, region_name=r, config=cfg)


def error_code(e) -> str:
    return e.response.get("Error", {}).get("Code", "")


def error_message(e) -> str:
    return e.response.get("Error", {}).get("Message", "")


def explain(e, doing: str) -> CommandError:
    """A ClientError nobody handled, as one line: credentials, permissions, or what AWS said."""
    code, msg = error_code(e), error_message(e)
    if code in BAD_CREDENTIALS:
        return CommandError(f"AWS rejected the credentials while {doing} ({code}): refresh them "
                            "('aws sso login' or new access keys) and check --profile")
    if code in DENIED:
        return CommandError(f"AWS denied {doing} ({code}: {msg}): the IAM user or role needs the permissions "
                            "listed in the README ('Permissions the AWS user needs')")
    return CommandError(f"AWS failed while {doing}: {code}: {msg}")


class Iot:
    """One account and region as this run sees it: the client, progress lines, and what the run changed.

    The same wrapper serves the Lambda and DynamoDB clients a topic rule needs (`sibling`)."""

    def __init__(self, client, progress: Progress = quiet, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.progress = progress
        self.sleep = sleep  # waits that are not botocore's (teardown waits for detachments to propagate)
        self.actions: List[str] = []  # what this run changed, in order
        self.service = "AWS " + str(client.meta.service_model.service_id)  # "AWS IoT", "AWS Lambda"
        _report_retries(client, progress)

    @property
    def region(self) -> str:
        return self.client.meta.region_name

    def sibling(self, client) -> "Iot":
        """Another service's client in this run: the same progress lines and the same list of changes."""
        other = Iot(client, self.progress, self.sleep)
        other.actions = self.actions
        return other

    def did(self, what: str) -> None:
        self.actions.append(what)
        self.progress(what)

    def call(self, op: str, **kw):
        """One API call (botocore retries it); a ClientError other than throttling is the caller's to judge."""
        import botocore.exceptions as bx
        try:
            return getattr(self.client, op)(**kw)
        except bx.ClientError as e:
            if error_code(e) in THROTTLED:
                n = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
                raise CommandError(f"AWS kept throttling {op} after {n} attempts: wait a minute and run the same "
                                   "command again (it is safe to re-run)") from None
            raise
        except bx.NoCredentialsError:
            raise CommandError(NO_CREDENTIALS) from None
        except bx.EndpointConnectionError as e:
            raise CommandError(f"cannot reach {self.service} in {self.region} ({e.kwargs.get('endpoint_url')}): check "
                               "the network and --region") from None
        except (bx.ConnectTimeoutError, bx.ReadTimeoutError) as e:
            raise CommandError(f"{self.service} in {self.region} did not answer {op} in time ({e}): check the network, "
                               "then run the same command again (it is safe to re-run)") from None

    def get(self, op: str, **kw) -> Optional[dict]:
        """describe-style call; None when the resource does not exist."""
        import botocore.exceptions as bx
        try:
            return self.call(op, **kw)
        except bx.ClientError as e:
            if error_code(e) == "ResourceNotFoundException":
                return None
            raise explain(e, op) from None

    def do(self, op: str, doing: str, **kw):
        import botocore.exceptions as bx
        try:
            return self.call(op, **kw)
        except bx.ClientError as e:
            raise explain(e, doing) from None

    def pages(self, op: str, key: str, **kw) -> list:
        """All pages of a list call (these calls page with either marker/nextMarker or nextToken)."""
        out: list = []
        token_arg = "nextToken" if op in ("list_things", "list_thing_principals", "list_topic_rules") else "marker"
        token = None
        while True:
            page = self.do(op, op.replace("_", " "), **dict(kw, **({token_arg: token} if token else {})))
            out += page.get(key, [])
            token = page.get("nextMarker") or page.get("nextToken")
            if not token:
                return out


def _report_retries(client, progress: Progress) -> None:
    """A progress line before each retry botocore makes: its back-off can add up to half a minute of silence."""
    from botocore import xform_name

    def note_failure(response, caught_exception, request_dict, **_kw):
        if caught_exception is not None:
            why = type(caught_exception).__name__
        elif response is not None and response[0].status_code >= 300:
            why = response[1].get("Error", {}).get("Code") or f"HTTP {response[0].status_code}"
        else:
            return None
        request_dict["context"]["sensorpub_last_failure"] = why
        return None  # an observer: botocore's own handler decides whether and when to retry

    def announce(request, operation_name, **_kw):
        retries = request.context.get("retries", {})
        if retries.get("attempt", 1) > 1:
            why = request.context.get("sensorpub_last_failure", "an error")
            of = f" of {retries['max'] - 1}" if retries.get("max") else ""
            progress(f"AWS call {xform_name(operation_name)} failed ({why}): retry {retries['attempt'] - 1}{of}")

    service = client.meta.service_model.service_id.hyphenize()  # iot, lambda, dynamodb
    client.meta.events.register(f"needs-retry.{service}", note_failure)
    client.meta.events.register(f"request-created.{service}", announce)
