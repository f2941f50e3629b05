"""edgefleet agent: the device side (MQTT session, updater, verifier, runtimes, telemetry).

Installs without torch, fastapi or sqlalchemy; imports only ``shared``,
paho-mqtt, numpy and a model runtime.
"""
