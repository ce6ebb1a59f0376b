"""What the command transport tests share: a device subscribed over MQTT v5 (``device``),
a transport to publish through (``route``: ``mqtt`` straight to Mosquitto, ``eventgrid``
through the HTTP Publish stand-in), the commands they publish, and a credential that
records the token requests of the Event Grid HTTP publish transport, with the token and
grants it hands out."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from azure.core.credentials import AccessToken
from paho.mqtt.enums import CallbackAPIVersion

from shared.commands.eventgrid_transport import EventGridTransport
from shared.commands.mqtt_transport import MqttTransport
from shared.commands.transport import Publication, Transport
from standins.httppublish import HttpPublishServer, run_httppublish
from standins.services import Mosquitto

TOKEN = "token-of-the-app"
ONE_DEVICE_TOKEN = "token-for-another-device-only"
GRANTS = {TOKEN: ["#"], ONE_DEVICE_TOKEN: ["devices/another-device/#"]}


class RecordingCredential:
    """azure-core's AsyncTokenCredential: hands out ``token`` (or raises ``error``) and
    records the scopes asked for."""

    def __init__(self, token: str = TOKEN, error: Exception | None = None) -> None:
        self.token = token
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **_options: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> RecordingCredential:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None


# --- the device side and the cloud side ------------------------------------------------


class Subscriber:
    """A device: an MQTT v5 client subscribed at QoS 1, keeping what it receives."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda client, *_: client.subscribe(topic_filter, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(5), "the broker did not acknowledge the subscription"

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[mqtt.MQTTMessage]:
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.messages) >= count, timeout)
            assert arrived, f"{len(self.messages)} of {count} messages arrived"
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def device(broker: Mosquitto, topic_filter: str) -> Iterator[Subscriber]:
    subscriber = Subscriber(broker.port, topic_filter)
    try:
        yield subscriber
    finally:
        subscriber.close()


@dataclass
class Route:
    """A transport, and for ``eventgrid`` the stand-in it talks to and its credential."""

    transport: Transport
    server: HttpPublishServer | None = None
    credential: RecordingCredential | None = None


@contextlib.contextmanager
def route(kind: str, broker: Mosquitto, run: Any, *, timeout: float = 5.0, token: str = TOKEN) -> Iterator[Route]:
    if kind == "mqtt":
        mqtt_transport = MqttTransport.from_url(broker.url, timeout=timeout)
        try:
            yield Route(mqtt_transport)
        finally:
            run(mqtt_transport.close())
        return
    stand_in = run_httppublish(broker.url, GRANTS, mqtt_timeout=timeout / 3)
    server = run(stand_in.__aenter__())
    credential = RecordingCredential(token)
    eventgrid = EventGridTransport("namespace.region-1.ts.eventgrid.azure.net", credential, base_url=server.url,
                                   request_timeout=timeout / 2, total_timeout=timeout, rng=random.Random(7))
    try:
        yield Route(eventgrid, server, credential)
    finally:
        run(eventgrid.close())
        run(stand_in.__aexit__(None, None, None))


def prefix() -> str:
    """Topics of a device of the test's own (the session's broker is shared)."""
    return f"devices/cam-{uuid.uuid4().hex[:8]}"


def command(device_prefix: str, name: str = "reboot", **payload: Any) -> Publication:
    """A command as the contract shapes it (samples/command-to-device.json)."""
    command_id = str(uuid.uuid4())
    body = {"commandId": command_id, "name": name, "payload": payload or {"delaySeconds": 5},
            "issuedAt": "2026-11-20T08:20:00.000Z", "expiresAt": "2026-11-20T08:25:00.000Z"}
    return Publication(topic=f"{device_prefix}/commands/{name}", payload=orjson.dumps(body), expiry_seconds=300,
                       response_topic=f"{device_prefix}/commands/{command_id}/response",
                       correlation_data=command_id.encode(), user_properties=(("commandId", command_id),))
