"""The session's stand-ins are the real services, reachable over real connections."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from standins.services import Mosquitto


def test_mosquitto_speaks_mqtt_v5_with_properties(mosquitto: Mosquitto) -> None:
    received: list[mqtt.MQTTMessage] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        received.append(message)
        done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        client.subscribe("devices/cam-1/commands/+", qos=1)  # as devices do: not their own answers
        assert subscribed.wait(5), "the broker did not acknowledge the subscription"
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = b"cmd-1"
        props.ResponseTopic = "devices/cam-1/commands/cmd-1/response"
        props.MessageExpiryInterval = 60
        client.publish("devices/cam-1/commands/reboot", b"{}", qos=1, properties=props).wait_for_publish(5)
        assert done.wait(5), "no message came back from the broker"
    finally:
        client.loop_stop()
        client.disconnect()
    message = received[0]
    assert message.properties is not None
    assert message.topic == "devices/cam-1/commands/reboot"
    properties = message.properties.json()  # type: ignore[no-untyped-call]  # attributes are dynamic
    assert properties["CorrelationData"] == b"cmd-1".hex()
    assert properties["ResponseTopic"] == "devices/cam-1/commands/cmd-1/response"
