"""The controller's MQTT side: one paho client, an ingest worker and a block server."""

from controller.mqtt.bridge import MqttBridge

__all__ = ["MqttBridge"]
