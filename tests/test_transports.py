"""The command transports, end to end: what a device subscribed over MQTT v5 receives
when the cloud publishes through the ``mqtt`` transport (straight to Mosquitto) or the
``eventgrid`` transport (HTTP Publish to the local stand-in, which checks every request
against the documented contract and forwards it to Mosquitto). The same tests run over
both, then their shared failures (a stopped broker, a refused topic), and which transport
the process uses. What only one transport does is in test_mqtt_transport.py and
test_eventgrid_transport.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from shared.commands.eventgrid_transport import EventGridTransport
from shared.commands.mqtt_transport import BrokerAddress, MqttTransport
from shared.commands.transport import Publication, PublishError
from shared.commands.transports import reset_transport, transport
from shared.platform.settings import reset_settings
from standins.services import Mosquitto, run_mosquitto
from tests.support.transports import command, device, prefix, route

KINDS = ["mqtt", "eventgrid"]


def properties_of(message: mqtt.MQTTMessage) -> dict[str, Any]:
    return {name: getattr(message.properties, name) for name in
            ("ResponseTopic", "CorrelationData", "MessageExpiryInterval", "ContentType", "UserProperty")
            if hasattr(message.properties, name)}


# --- what the device receives ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_device_receives_the_topic_payload_and_every_property_exactly(
        kind: str, mosquitto: Mosquitto, run: Any) -> None:
    device_prefix = prefix()
    publication = command(device_prefix)
    with device(mosquitto, f"{device_prefix}/#") as subscriber, route(kind, mosquitto, run) as via:
        run(via.transport.publish(publication))
        [message] = subscriber.wait_for(1)
    assert message.topic == publication.topic
    assert message.payload == publication.payload
    assert message.qos == 1
    assert message.retain is False
    received = properties_of(message)
    # The broker forwards the expiry interval left, so a second may have gone.
    assert publication.expiry_seconds - 1 <= received.pop("MessageExpiryInterval") <= publication.expiry_seconds
    assert received == {"ResponseTopic": publication.response_topic, "CorrelationData": publication.correlation_data,
                        "ContentType": "application/json", "UserProperty": list(publication.user_properties)}


@pytest.mark.parametrize("kind", KINDS)
def test_binary_correlation_data_repeated_user_properties_and_any_utf8_topic_arrive_unchanged(
        kind: str, mosquitto: Mosquitto, run: Any) -> None:
    topic = f"{prefix()}-cámara 7/commands/set%level"
    publication = Publication(topic=topic, payload=b'{"level": "\xc3\xa9"}', expiry_seconds=3600,
                              response_topic="devices/ünïcode/responses", correlation_data=bytes(range(256)),
                              user_properties=(("k", "1"), ("k", "2"), ("ключ", "значение")))
    with device(mosquitto, topic) as subscriber, route(kind, mosquitto, run) as via:
        run(via.transport.publish(publication))
        [message] = subscriber.wait_for(1)
    assert (message.topic, message.payload) == (topic, publication.payload)
    received = properties_of(message)
    assert received["ResponseTopic"] == publication.response_topic
    assert received["CorrelationData"] == publication.correlation_data
    assert received["UserProperty"] == list(publication.user_properties)


@pytest.mark.parametrize("kind", KINDS)
def test_a_broadcast_carries_only_the_expiry_and_the_content_type(kind: str, mosquitto: Mosquitto, run: Any) -> None:
    group = f"line-{uuid.uuid4().hex[:8]}"
    publication = Publication(topic=f"groups/{group}/broadcast/maintenance", payload=b'{"name":"maintenance"}',
                              expiry_seconds=3600)
    with device(mosquitto, f"groups/{group}/broadcast/#") as subscriber, route(kind, mosquitto, run) as via:
        run(via.transport.publish(publication))
        [message] = subscriber.wait_for(1)
    received = properties_of(message)
    assert 3599 <= received.pop("MessageExpiryInterval") <= 3600
    assert received == {"ContentType": "application/json"}


@pytest.mark.parametrize("kind", KINDS)
def test_fifty_concurrent_publishes_all_return_and_all_arrive(kind: str, mosquitto: Mosquitto, run: Any) -> None:
    device_prefix = prefix()
    publications = [command(device_prefix, n=n) for n in range(50)]

    async def publish_all() -> list[None]:
        return await asyncio.gather(*(via.transport.publish(p) for p in publications))

    with device(mosquitto, f"{device_prefix}/#") as subscriber, route(kind, mosquitto, run) as via:
        assert run(publish_all()) == [None] * 50
        messages = subscriber.wait_for(50)
    assert sorted(m.payload for m in messages) == sorted(p.payload for p in publications)
    assert {m.qos for m in messages} == {1}


def test_the_process_transport_publishes_to_the_configured_broker(app_env: Any, mosquitto: Mosquitto,
                                                                   run: Any) -> None:
    device_prefix = prefix()
    publication = command(device_prefix)
    run(reset_transport())
    try:
        with device(mosquitto, f"{device_prefix}/#") as subscriber:
            run(transport().publish(publication))
            [message] = subscriber.wait_for(1)
        assert message.payload == publication.payload
        assert isinstance(transport(), MqttTransport)
    finally:
        run(reset_transport())


# --- a broker that stops, and one that refuses -------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_stopped_broker_fails_the_publish_as_transient_within_the_timeout_and_the_next_one_reconnects(
        kind: str, run: Any) -> None:
    timeout = 3.0
    device_prefix = prefix()
    with contextlib.ExitStack() as first_broker:
        broker = first_broker.enter_context(run_mosquitto())
        with route(kind, broker, run, timeout=timeout) as via:
            run(via.transport.publish(command(device_prefix)))  # connected
            first_broker.close()  # the broker stops

            started = time.monotonic()
            with pytest.raises(PublishError) as failed:
                run(via.transport.publish(command(device_prefix)))
            elapsed = time.monotonic() - started
            assert failed.value.transient
            assert failed.value.retry_after is not None and failed.value.retry_after >= 1
            assert elapsed < timeout + 1, f"failed after {elapsed:.1f} s"

            with run_mosquitto(port=broker.port) as back, device(back, f"{device_prefix}/#") as subscriber:
                after = command(device_prefix)
                run(via.transport.publish(after))
                [message] = subscriber.wait_for(1)
            assert message.payload == after.payload


@pytest.mark.parametrize("kind", KINDS)
def test_a_broker_that_refuses_the_topic_fails_the_publish_as_not_transient(kind: str, run: Any) -> None:
    # Anonymous clients may publish commands but nothing else.
    acl = "topic write devices/+/commands/#\ntopic read #\n"
    with run_mosquitto(acl=acl) as broker, route(kind, broker, run) as via:
        run(via.transport.publish(command(prefix())))
        with pytest.raises(PublishError) as refused:
            run(via.transport.publish(Publication("broadcast/maintenance", b"{}", 60)))
        # The connection survives a refusal of one message.
        run(via.transport.publish(command(prefix())))
    assert not refused.value.transient
    assert refused.value.retry_after is None
    if kind == "mqtt":
        assert "Not authorized (0x87)" in refused.value.reason
    else:
        assert "403" in refused.value.reason and "EventGrid TopicSpaces Publisher" in refused.value.reason


# --- which transport the process uses ---------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, run: Any) -> Iterator[pytest.MonkeyPatch]:
    run(reset_transport())
    yield monkeypatch
    run(reset_transport())
    monkeypatch.undo()
    reset_settings()


def test_the_process_transport_follows_the_settings_until_reset(environment: pytest.MonkeyPatch, run: Any) -> None:
    environment.setenv("COMMAND_TRANSPORT", "eventgrid")
    environment.setenv("EVENTGRID_MQTT_HOSTNAME", "ns.westus3-1.ts.eventgrid.azure.net")
    reset_settings()
    eventgrid = transport()
    assert isinstance(eventgrid, EventGridTransport)
    assert eventgrid.base_url == "https://ns.westus3-1.ts.eventgrid.azure.net"
    assert transport() is eventgrid

    environment.setenv("COMMAND_TRANSPORT", "mqtt")
    environment.setenv("MQTT_BROKER_URL", "mqtts://broker.example.com")
    environment.setenv("MQTT_USERNAME", "cloud")
    environment.setenv("MQTT_PASSWORD", "pw")
    reset_settings()
    assert transport() is eventgrid  # built once per process
    run(reset_transport())
    mqtt_transport = transport()
    assert isinstance(mqtt_transport, MqttTransport)
    assert mqtt_transport.address == BrokerAddress("broker.example.com", 8883, tls=True, username="cloud",
                                                   password="pw")
    assert mqtt_transport.client_id.startswith("cloud-")
    assert MqttTransport.from_url("mqtt://h").client_id != mqtt_transport.client_id
