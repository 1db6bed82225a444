"""sensorpub host tools: PKI, broker, flashing, virtual board, verification, AWS IoT."""
from .contract import FW_VERSION as __version__  # one version: the host tools and the firmware they flash
