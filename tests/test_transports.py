"""The command transports, end to end: what a device subscribed over MQTT v5 receives
when the cloud publishes through the ``mqtt`` transport (straight to Mosquitto) or the
``eventgrid`` transport (HTTP Publish to the local stand-in, which checks every request
against the documented contract and forwards it to Mosquitto). The same tests run over
both; the failures of each (a stopped broker, refusals, throttling) come last."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.identity import CredentialUnavailableError
from paho.mqtt.enums import CallbackAPIVersion
from yarl import URL

from shared.commands.eventgrid_transport import (
    API_VERSION,
    EVENTGRID_SCOPE,
    EventGridTransport,
    publish_headers,
    publish_url,
    retry_after_seconds,
)
from shared.commands.mqtt_transport import BrokerAddress, MqttTransport, connack_error, puback_error
from shared.commands.transport import Publication, PublishError, Transport
from shared.commands.transports import reset_transport, transport
from shared.platform.settings import reset_settings
from standins.httppublish import HttpPublishServer, run_httppublish
from standins.services import Mosquitto, run_mosquitto
from tests.support.transports import GRANTS, ONE_DEVICE_TOKEN, TOKEN, RecordingCredential

KINDS = ["mqtt", "eventgrid"]


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


def test_mqtt_credentials_are_sent_and_a_bad_password_fails_as_not_transient(run: Any) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    with run_mosquitto(passwords={"cloud": password}) as broker:
        good = MqttTransport.from_url(broker.url, username="cloud", password=password, timeout=3)
        in_url = MqttTransport.from_url(f"mqtt://cloud:{password}@127.0.0.1:{broker.port}", timeout=3)
        wrong = MqttTransport.from_url(broker.url, username="cloud", password="not-" + password, timeout=3)
        try:
            run(good.publish(command(prefix())))
            run(in_url.publish(command(prefix())))
            with pytest.raises(PublishError) as refused:
                run(wrong.publish(command(prefix())))
        finally:
            for each in (good, in_url, wrong):
                run(each.close())
    assert not refused.value.transient
    assert "refused the connection" in refused.value.reason and "MQTT_PASSWORD" in refused.value.reason
    assert password not in refused.value.reason


def test_mqtts_speaks_tls_so_a_plain_listener_fails_it_as_transient(mosquitto: Mosquitto, run: Any) -> None:
    tls = MqttTransport.from_url(f"mqtts://127.0.0.1:{mosquitto.port}", timeout=3)
    plain = MqttTransport.from_url(f"mqtt://127.0.0.1:{mosquitto.port}", timeout=3)
    try:
        run(plain.publish(command(prefix())))
        started = time.monotonic()
        with pytest.raises(PublishError) as failed:
            run(tls.publish(command(prefix())))
        assert time.monotonic() - started < 4
    finally:
        run(tls.close())
        run(plain.close())
    assert failed.value.transient


# --- HTTP Publish: refusals, throttling, outages -----------------------------------------


def test_http_publish_asks_for_an_event_grid_token_and_a_401_fails_at_once_without_echoing_it(
        mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run, token="expired-token-" + uuid.uuid4().hex) as via:
        assert via.server is not None and via.credential is not None
        with pytest.raises(PublishError) as refused:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == [401]
        assert via.credential.scopes == [(EVENTGRID_SCOPE,)]
        assert via.credential.token not in refused.value.reason
    assert EVENTGRID_SCOPE == "https://eventgrid.azure.net/.default"
    assert not refused.value.transient
    assert "401" in refused.value.reason


def test_a_403_fails_at_once_and_names_the_role_to_check(mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run, token=ONE_DEVICE_TOKEN) as via:
        assert via.server is not None
        run(via.transport.publish(command("devices/another-device")))  # the token's own topics pass
        with pytest.raises(PublishError) as refused:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == [204, 403]
    assert not refused.value.transient
    assert "EventGrid TopicSpaces Publisher" in refused.value.reason
    assert ONE_DEVICE_TOKEN not in refused.value.reason


def test_a_429_is_retried_after_its_retry_after_and_the_message_arrives_once(mosquitto: Mosquitto, run: Any) -> None:
    device_prefix = prefix()
    publication = command(device_prefix)
    with device(mosquitto, f"{device_prefix}/#") as subscriber, route("eventgrid", mosquitto, run) as via:
        assert via.server is not None
        via.server.fail_next(429, retry_after="1")
        started = time.monotonic()
        run(via.transport.publish(publication))
        elapsed = time.monotonic() - started
        assert via.server.answers == [429, 204]
        [message] = subscriber.wait_for(1)
    assert elapsed >= 1.0
    assert message.payload == publication.payload


def test_server_errors_are_retried_with_backoff_until_the_time_runs_out_then_fail_as_transient(
        mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run, timeout=2.0) as via:
        assert via.server is not None
        via.server.fail_next(*[500, 503, 502, 504] * 25)
        started = time.monotonic()
        with pytest.raises(PublishError) as failed:
            run(via.transport.publish(command(prefix())))
        elapsed = time.monotonic() - started
        answers = via.server.answers
    assert failed.value.transient
    assert len(answers) >= 3 and set(answers) <= {500, 502, 503, 504}
    assert elapsed < 2.5, f"gave up after {elapsed:.1f} s"


def test_a_retry_after_beyond_the_time_left_fails_at_once_and_passes_it_on(mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run) as via:
        assert via.server is not None
        via.server.fail_next(503, retry_after="120")
        started = time.monotonic()
        with pytest.raises(PublishError) as failed:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == [503]
    assert time.monotonic() - started < 1
    assert failed.value.transient and failed.value.retry_after == 120


@pytest.mark.parametrize(("error", "transient"), [(CredentialUnavailableError("no identity"), False),
                                                  (ServiceRequestError("IMDS unreachable"), True)])
def test_a_credential_that_cannot_give_a_token_fails_the_publish_before_any_request(
        error: Exception, transient: bool, mosquitto: Mosquitto, run: Any) -> None:
    with route("eventgrid", mosquitto, run) as via:
        assert via.server is not None and via.credential is not None
        via.credential.error = error
        with pytest.raises(PublishError) as failed:
            run(via.transport.publish(command(prefix())))
        assert via.server.answers == []
    assert failed.value.transient is transient
    assert "AZURE_CLIENT_ID" in failed.value.reason


# --- the stand-in holds the transport to the documented contract -------------------------

Request = tuple[str, URL, dict[str, str]]
Mutation = Callable[[Request], Request]


def _query(request: Request, changes: dict[str, str | None]) -> Request:
    """The request with query parameters replaced (None removes one), kept as encoded."""
    method, url, headers = request
    parts: dict[str, str | None] = {}
    for part in url.raw_query_string.split("&"):
        name, _, value = part.partition("=")
        parts[name] = value
    raw = "&".join(f"{k}={v}" for k, v in (parts | changes).items() if v is not None)
    return method, URL(f"{url.scheme}://{url.raw_authority}{url.raw_path}?{raw}", encoded=True), headers


def _header(request: Request, name: str, value: str | None) -> Request:
    method, url, headers = request
    changed = {k: v for k, v in headers.items() if k != name}
    if value is not None:
        changed[name] = value
    return method, url, changed


# Each case: how the valid request is broken, the status, and what the refusal says.
MALFORMED: dict[str, tuple[Mutation, int, str]] = {
    "no Authorization header": (lambda r: _header(r, "authorization", None), 401, "bearer token is required"),
    "a token the broker does not know": (
        lambda r: _header(r, "authorization", "Bearer forged"), 401, "token is not valid"),
    "another scheme than Bearer": (
        lambda r: _header(r, "authorization", f"Basic {TOKEN}"), 401, "bearer token is required"),
    "a token without rights on the topic": (
        lambda r: _header(r, "authorization", f"Bearer {ONE_DEVICE_TOKEN}"), 403, "may not publish to this topic"),
    "no api-version": (lambda r: _query(r, {"api-version": None}), 400, "api-version must be"),
    "another api-version": (lambda r: _query(r, {"api-version": "2023-06-01-preview"}), 400, "api-version must be"),
    "no topic": (lambda r: _query(r, {"topic": None}), 400, "topic is required"),
    "a topic not percent-encoded": (
        lambda r: _query(r, {"topic": "devices/cam/commands/reboot"}), 400, "topic must be percent-encoded"),
    "a wildcard topic": (
        lambda r: _query(r, {"topic": "devices%2F%2B%2Fcommands%2Freboot"}), 400, "without wildcards"),
    "an unknown query parameter": (lambda r: _query(r, {"priority": "high"}), 400, "unknown query parameter"),
    "a repeated query parameter": (
        lambda r: (r[0], URL(str(r[1]) + "&qos=1&qos=0", encoded=True), r[2]), 400, "is repeated"),
    "QoS 2": (lambda r: _header(r, "mqtt-qos", "2"), 400, "qos must be 0 or 1"),
    "retain as a word": (lambda r: _header(r, "mqtt-retain", "false"), 400, "retain must be 0 or 1"),
    "a response topic not percent-encoded": (
        lambda r: _header(r, "mqtt-response-topic", "devices/cam/r"), 400, "mqtt-response-topic must be percent"),
    "correlation data not in base64": (
        lambda r: _header(r, "mqtt-correlation-data", "cmd 1!"), 400, "mqtt-correlation-data must be base64"),
    "user properties as plain JSON": (
        lambda r: _header(r, "mqtt-user-properties", '[{"commandId":"1"}]'), 400, "must be a base64 JSON array"),
    "user properties not objects of strings": (
        lambda r: _header(r, "mqtt-user-properties", base64.b64encode(b'[{"n":1}]').decode()), 400,
        "objects of strings"),
    "a negative message expiry": (
        lambda r: _header(r, "mqtt-message-expiry", "-1"), 400, "mqtt-message-expiry must be"),
    "a message expiry beyond 32 bits": (
        lambda r: _header(r, "mqtt-message-expiry", str(2**32)), 400, "mqtt-message-expiry must be"),
    "an unknown mqtt- header": (lambda r: _header(r, "mqtt-priority", "1"), 400, "unknown header mqtt-priority"),
    "a payload format indicator of 1 over bytes that are not UTF-8": (
        lambda r: _header(r, "mqtt-payload-format-indicator", "1"), 400, "payload is not UTF-8"),
    "GET": (lambda r: ("GET", r[1], r[2]), 405, "only POST"),
    "another path": (lambda r: (r[0], r[1].with_path("/mqtt/message"), r[2]), 404, "no such resource"),
}


@pytest.fixture(scope="module")
def stand_in(mosquitto: Mosquitto, run: Any) -> Iterator[HttpPublishServer]:
    context = run_httppublish(mosquitto.url, GRANTS)
    yield run(context.__aenter__())
    run(context.__aexit__(None, None, None))


async def _send(request: Request, body: bytes) -> tuple[int, str]:
    method, url, headers = request
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers, data=body) as answer:
        return answer.status, await answer.text()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_stand_in_refuses_a_request_that_breaks_the_contract_and_publishes_nothing(
        case: str, stand_in: HttpPublishServer, mosquitto: Mosquitto, run: Any) -> None:
    device_prefix = prefix()
    publication = command(device_prefix)
    valid: Request = ("POST", publish_url(stand_in.url, publication.topic), publish_headers(publication, TOKEN))
    mutate, status, why = MALFORMED[case]
    body = b"\xff" + publication.payload  # only the payload-format case looks at it
    with device(mosquitto, f"{device_prefix}/#") as subscriber:
        answer, text = run(_send(mutate(valid), body))
        assert (answer, why in text) == (status, True), text
        # Then a valid request on the same topic: had the refused one been forwarded,
        # it would have arrived first.
        assert run(_send(valid, publication.payload))[0] == 204
        messages = subscriber.wait_for(1)
        assert [m.payload for m in messages] == [publication.payload]


# --- pure parts --------------------------------------------------------------------------


def test_requests_are_encoded_as_the_documentation_example() -> None:
    # The example of learn.microsoft.com/azure/event-grid/mqtt-http-publish.
    correlation = ">U±¶¶»/".encode()
    publication = Publication(topic="devices/CXa-23112/prompt", payload=b"Please accept terms of licensing and "
                              b"agreement", expiry_seconds=60, response_topic="devices/CXa-23112/reply",
                              correlation_data=correlation,
                              user_properties=(("Urgency", "alert"),
                                               ("RequestId", "55f4a7ee-b0b4-4d7f-8eb5-2edba2ced5d7")),
                              content_type="text/plain;charset=UTF-8")
    url = publish_url("https://nsname.westus3-1.ts.eventgrid.azure.net", publication.topic)
    assert str(url) == ("https://nsname.westus3-1.ts.eventgrid.azure.net/mqtt/messages"
                        f"?topic=devices%2FCXa-23112%2Fprompt&api-version={API_VERSION}")
    assert API_VERSION == "2025-02-15-preview"
    assert publish_headers(publication, "<ENTRA_TOKEN_HERE>") == {
        "authorization": "Bearer <ENTRA_TOKEN_HERE>",
        "mqtt-qos": "1",
        "mqtt-retain": "0",
        "mqtt-response-topic": "devices%2FCXa-23112%2Freply",
        "mqtt-correlation-data": "PlXCscK2wrbCuy8=",
        "mqtt-user-properties": "W3siVXJnZW5jeSI6ImFsZXJ0In0seyJSZXF1ZXN0SWQiOiI1NWY0YTdlZS1iMGI0LTRkN2YtOGViNS0yZWRiYT"
                                "JjZWQ1ZDcifV0=",
        "mqtt-message-expiry": "60",
        "content-type": "text/plain;charset=UTF-8",
    }


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = time.time()
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_puback_and_connack_reason_codes_decide_success_and_transience() -> None:
    assert puback_error(0x00, "Success") is None
    assert puback_error(0x10, "No matching subscribers") is None
    not_authorized = puback_error(0x87, "Not authorized")
    quota = puback_error(0x97, "Quota exceeded")
    assert not_authorized is not None and not not_authorized.transient
    assert quota is not None and quota.transient
    assert not connack_error(0x86, "Bad user name or password").transient
    assert connack_error(0x88, "Server unavailable").transient


def test_broker_urls_give_the_address_tls_and_credentials() -> None:
    assert BrokerAddress.from_url("mqtt://broker.local") == BrokerAddress("broker.local", 1883, tls=False)
    assert BrokerAddress.from_url("mqtts://broker.example.com") == BrokerAddress("broker.example.com", 8883, tls=True)
    from_url = BrokerAddress.from_url("mqtts://us%40r:p%3Ass@broker.example.com:8884")
    assert (from_url.port, from_url.username, from_url.password) == (8884, "us@r", "p:ss")
    settings_win = BrokerAddress.from_url("mqtts://u:p@h", username="cloud", password="pw")
    assert (settings_win.username, settings_win.password) == ("cloud", "pw")
    assert "p:ss" not in repr(from_url)


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


def test_the_http_publish_api_version_is_a_setting_with_the_tested_default() -> None:
    from shared.commands.settings import CommandSettings
    from shared.platform.settings import SettingsError, load

    assert load(CommandSettings, {}).eventgrid_publish_api_version == "2025-02-15-preview"
    newer = load(CommandSettings, {"EVENTGRID_PUBLISH_API_VERSION": "2026-06-01-preview"})
    url = publish_url("https://ns.westus3-1.ts.eventgrid.azure.net", "devices/d/commands/c",
                      newer.eventgrid_publish_api_version)
    assert url.query["api-version"] == "2026-06-01-preview"
    with pytest.raises(SettingsError, match="EVENTGRID_PUBLISH_API_VERSION"):
        load(CommandSettings, {"EVENTGRID_PUBLISH_API_VERSION": "latest&topic=x"})
