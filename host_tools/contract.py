"""The device-host contract, host side: topic layout said once (the board says it in firmware/app.py)."""

ROOT = "devices"              # topic_prefix default on the board
TELEMETRY_LEAF = "telemetry"  # QoS 1 readings
STATUS_LEAF = "status"        # retained online / offline (and the Last Will)
DEVICE_LEAVES = (TELEMETRY_LEAF, STATUS_LEAF)  # every topic a device writes, nothing else

TELEMETRY = f"{ROOT}/+/{TELEMETRY_LEAF}"
STATUS = f"{ROOT}/+/{STATUS_LEAF}"


def device_topic(device: str, leaf: str) -> str:
    return f"{ROOT}/{device}/{leaf}"
