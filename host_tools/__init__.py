"""sensorpub host tools: PKI, broker, flashing, virtual board, verification, AWS IoT."""
__version__ = "0.1.0"
