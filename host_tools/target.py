"""Which broker a host command talks to and what it trusts: the fleet's local Mosquitto or AWS IoT Core.

`verify` and `flash` resolve it here, once: host, port (locally: the one the fleet's broker was last
started on), and the CA that signs the server's certificate (the fleet CA locally; Amazon Root CA 1,
or --aws-root-ca, for AWS IoT).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .contract import DEFAULT_PORT, DEVICE_LEAVES
from .errors import CommandError
from .fleet import Fleet
from .keys import load_cert

ALPN_PORT = 443          # AWS IoT: MQTT over TLS on 443 with ALPN
ALPN = "x-amzn-mqtt-ca"


@dataclass
class Target:
    kind: str            # local | aws
    host: str
    port: int
    ca_file: Path        # trust anchor for the server certificate
    account: Optional[object] = None  # the AWS account, when the endpoint was looked up there

    def ca_der(self) -> Optional[bytes]:
        """The trust anchor as the board stores it when it is not the fleet CA; None for the fleet CA."""
        if self.kind != "aws":
            return None
        from cryptography.hazmat.primitives.serialization import Encoding
        return load_cert(self.ca_file).public_bytes(Encoding.DER)


def resolve(fleet: str, kind: str = "local", host: Optional[str] = None, port: Optional[int] = None,
            alpn: bool = False, aws_root_ca: Optional[str] = None, account: Optional[Callable[[], object]] = None
            ) -> Target:
    """The broker to use. `account()` gives the AWS account (only called when the endpoint must be looked up)."""
    if kind != "aws":
        given = [flag for flag, on in (("--alpn", alpn), ("--aws-root-ca", aws_root_ca)) if on]
        if given:
            raise CommandError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for --target aws")
        return Target("local", host or "localhost", port or remembered_port(fleet) or DEFAULT_PORT, Fleet(fleet).ca_cert)
    from . import aws
    aws.amazon_root_ca(aws_root_ca)  # checks the file (and the shipped one's fingerprint)
    ca = Path(aws_root_ca) if aws_root_ca else aws.ROOT_CA_FILE
    acct = None
    if not host:
        if account is None:
            raise CommandError("--target aws needs --host or an AWS account to look the endpoint up in")
        acct = account()
        host = acct.endpoint()  # type: ignore[attr-defined]
    return Target("aws", host, port or (ALPN_PORT if alpn else DEFAULT_PORT), ca, acct)


def remembered_port(fleet: str) -> Optional[int]:
    """The port the fleet's broker was last started on ('broker start --port'), so later commands need no --port."""
    from .broker import Broker
    lst = Broker(fleet).listener()
    return lst[0] if lst else None


def check_aws_config(device: str, cfg: dict, topic_prefix: str) -> None:
    """AWS IoT's fleet policy lets a device connect only as its thing, on the fleet's topic prefix."""
    if cfg.setdefault("client_id", device) != device:
        raise CommandError(f"--target aws: client_id must be the thing name {device!r}: the fleet policy "
                           "lets a device connect only as its thing")
    if cfg.get("topic_prefix", topic_prefix) != topic_prefix:
        raise CommandError(f"--target aws: topic_prefix must be {topic_prefix!r}: the fleet policy allows "
                           f"publishing only to {topic_prefix}/<thing>/" + " and /".join(DEVICE_LEAVES))
