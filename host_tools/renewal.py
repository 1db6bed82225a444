"""Certificate renewal over MQTT, host side: push a device's renewed certificate (DER, for the key the board
already has) on its retained certificate topic, and wait for the device's answer on its retained status.

The device checks the certificate (its own public key, the issuer and subject of the one in use, valid now),
reconnects with it and keeps it only if the broker accepts that connection (firmware/renew.py). It then reports
the serial it runs as CERT_KEY, or a refusal as CERT_REFUSED_KEY {SERIAL_KEY, REASON_KEY}. Once the device runs
it, the retained topic is cleared: it has nothing left to deliver.
"""
from dataclasses import dataclass
from typing import Callable, Optional

from .contract import CERT_KEY, CERT_LEAF, CERT_REFUSED_KEY, REASON_KEY, SERIAL_KEY
from .remote_config import Conversation, state_of
from .verify import Endpoint, clean

IN_USE, REFUSED, NO_ANSWER = "in use", "refused", "no answer"


def running(status: Optional[dict]) -> Optional[str]:
    """The serial (hex) of the certificate the device reports it runs; None: no report, or older firmware."""
    v = (status or {}).get(CERT_KEY)
    return v if isinstance(v, str) else None


def refused(status: Optional[dict]) -> Optional[dict]:
    r = (status or {}).get(CERT_REFUSED_KEY)
    return r if isinstance(r, dict) and isinstance(r.get(SERIAL_KEY), str) else None


def answer(status: Optional[dict], serial: str) -> Optional[str]:
    if running(status) == serial:
        return IN_USE
    if (refused(status) or {}).get(SERIAL_KEY) == serial:
        return REFUSED
    return None


def refusal_text(r: Optional[dict]) -> str:
    return clean(str((r or {}).get(REASON_KEY) or "no reason given"))


@dataclass
class Outcome:
    device: str
    serial: str                  # the certificate pushed
    previous: Optional[str]      # the serial the device reported before
    result: str                  # IN_USE | REFUSED | NO_ANSWER
    status: Optional[dict]       # the device's newest status document

    def as_json(self) -> dict:
        return {"device": self.device, "serial": self.serial, "previous": self.previous, "result": self.result,
                "running": running(self.status),
                "reason": refusal_text(refused(self.status)) if self.result == REFUSED else None,
                "state": state_of(self.status), "status": self.status}


def push(ep: Endpoint, device: str, der: bytes, serial: str, timeout: float,
         progress: Callable[[str], None] = lambda _m: None) -> Outcome:
    """Publish `der` (certificate `serial`) retained on the device's certificate topic and wait up to `timeout` s
    for its answer; clear the topic once the device runs it."""
    with Conversation(ep, device, leaf=CERT_LEAF, parse=bytes) as c:
        before = running(c.status)
        progress(f"pki renew: {device} reports certificate {before or '?'} in use; pushing certificate {serial}")
        c.publish(der, f"certificate {serial}")
        progress(f"pki renew: waiting up to {timeout:g} s for {device} to answer")
        st = c.wait_for(lambda s: answer(s, serial) is not None, timeout)
        result = answer(st, serial) or NO_ANSWER
        if result == IN_USE:
            c.publish(b"", "the cleared certificate topic")
        return Outcome(device, serial, before, result, st or c.status)
