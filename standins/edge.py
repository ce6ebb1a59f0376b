"""The edge side, for tests, the demo and the simulator: devices that are real MQTT
v5 clients, and a stand-in for Event Grid routing their answers to the app.

A :class:`Device` connects with a persistent session (clean start off, a session
expiry), subscribes to its command topic ``devices/{id}/commands/+``, to
``broadcast/#`` and to its group's ``groups/{group}/broadcast/#``, and only then
says it is ready: the broker keeps QoS 1 messages for a persistent session's
subscriptions while the device is away, so nothing published after the first
subscription is lost, even right after a reconnect. It answers each command on
the response topic the command carries (``devices/{id}/commands/{commandId}/
response``) by its behaviour: succeed, fail, reject, or stay silent.

A :class:`ResponseRouter` subscribes to every device's response topic and hands
the answers to ``command_responses`` as Event Grid routing would: each one as a
routed CloudEvent in an Event Hub batch as the host sends it, through the worker.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.commands.mqtt_transport import BrokerAddress

Behaviour = Literal["succeed", "fail", "reject", "silent"]


@dataclass
class Received:
    topic: str
    payload: dict[str, Any]
    properties: dict[str, Any]


@dataclass(frozen=True)
class TlsClient:
    """A device's X.509 client certificate and key (PEM files), and the CAs it trusts
    for the broker's certificate (None: the system's store, as for Event Grid)."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None


def _address(broker_url: str) -> tuple[str, int]:
    """(host, port) of ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``, as the app reads them."""
    if urlsplit(broker_url).scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL {broker_url!r}: the scheme must be mqtt:// or mqtts://")
    address = BrokerAddress.from_url(broker_url)
    return address.host or "127.0.0.1", address.port


def _properties(message: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    props = getattr(message, "properties", None)
    for name in ("ResponseTopic", "CorrelationData", "MessageExpiryInterval", "ContentType", "UserProperty"):
        if props is not None and hasattr(props, name):
            found[name] = getattr(props, name)
    return found


def _tls_context(device_id: str, tls: TlsClient | None) -> ssl.SSLContext:
    """TLS 1.2 or later, the broker's certificate checked (host name included)."""
    cafile = str(tls.cafile) if tls is not None and tls.cafile is not None else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        if tls is not None:
            context.load_cert_chain(tls.certfile, tls.keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"{device_id}: cannot use the TLS files {tls}: {error}") from error
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # Event Grid accepts TLS 1.2 and later
    return context


@dataclass
class Device:
    """One simulated device: an MQTT v5 client with a persistent session."""

    device_id: str
    broker_url: str
    behaviour: Behaviour = "succeed"
    group: str | None = None
    commands: list[Received] = field(default_factory=list)
    broadcasts: list[Received] = field(default_factory=list)
    decide: Callable[[Received], Behaviour] | None = None  # overrides ``behaviour`` per command
    tls: TlsClient | None = None  # a client certificate, over mqtts://
    username: str | None = None  # Event Grid: the client's authentication name

    def __post_init__(self) -> None:
        scheme = urlsplit(self.broker_url).scheme
        _address(self.broker_url)  # a bad URL fails here, not on the first connect
        if self.tls is not None and scheme != "mqtts":
            raise ValueError(f"{self.device_id}: a client certificate needs an mqtts:// broker URL, "
                             f"not {self.broker_url!r}")
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id,
                                   protocol=mqtt.MQTTv5)
        if scheme == "mqtts":
            self._client.tls_set_context(_tls_context(self.device_id, self.tls))
        if self.username is not None:
            self._client.username_pw_set(self.username)
        self._client.on_message = self._on_message
        self._ready = threading.Event()
        self._refused: str | None = None  # why the broker would not have this connection
        self._connected = False
        self.acknowledged = threading.Event()  # set by each accepted CONNACK, paho's reconnections included
        self._last_error = ""
        self._client.on_subscribe = lambda *args: self._ready.set()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_log = self._on_log
        self._lock = threading.Lock()

    def connect(self, timeout: float = 10) -> None:
        """Connect, subscribe, and return once the broker confirmed the subscriptions;
        :class:`ConnectionRefusedError` (with the broker's or TLS's reason) when it
        would not have the device."""
        host, port = _address(self.broker_url)
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = 3600
        self._ready.clear()
        self._refused, self._connected, self._last_error = None, False, ""
        try:
            self._client.connect(host, port, clean_start=False, properties=connect)
        except ssl.SSLError as error:  # the broker's certificate, or a TLS 1.2 refusal
            raise ConnectionRefusedError(f"{self.device_id}: TLS with {host}:{port} failed: {error}") from error
        self._client.loop_start()
        topics = [(f"devices/{self.device_id}/commands/+", 1), ("broadcast/#", 1)]
        if self.group:
            topics.append((f"groups/{self.group}/broadcast/#", 1))
        self._client.subscribe(topics)
        ready = self._ready.wait(timeout)
        if self._refused is not None:
            self._client.loop_stop()  # no reconnecting with what was refused
            raise ConnectionRefusedError(f"{self.device_id}: {host}:{port} refused the connection: {self._refused}")
        if not ready:
            raise TimeoutError(f"{self.device_id} was not subscribed within {timeout} s")

    def _on_log(self, client: Any, userdata: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._last_error = text  # e.g. the TLS alert the broker sent

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._ready.set()
        else:
            self._connected = True
            self.acknowledged.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self._connected and self._refused is None:  # lost before CONNACK: TLS or the socket
            self._refused = self._last_error or str(reason)
            if self.tls is not None:  # how Mosquitto refuses a certificate it does not trust
                self._refused += (f" (the broker did not accept the client certificate {self.tls.certfile}:"
                                  " is it one the broker trusts, or the one registered for this device?)")
            self._ready.set()

    def disconnect(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            payload = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            payload = {"raw": message.payload.decode(errors="replace")}
        received = Received(message.topic, payload, _properties(message))
        with self._lock:
            if "/commands/" in message.topic:
                self.commands.append(received)
            else:
                self.broadcasts.append(received)
        if "/commands/" in message.topic:
            self._answer(received)

    def _answer(self, command: Received) -> None:
        behaviour = self.decide(command) if self.decide else self.behaviour
        if behaviour == "silent":
            return
        answer: dict[str, Any] = {"commandId": command.payload.get("commandId"),
                                  "status": {"succeed": "succeeded", "fail": "failed", "reject": "rejected"}[behaviour]}
        if behaviour == "succeed":
            answer["result"] = {"done": command.payload.get("name")}
        else:
            answer["error"] = {"message": f"{self.device_id} would not ({behaviour})"}
        topic = command.properties.get("ResponseTopic") or (
            f"devices/{self.device_id}/commands/{answer['commandId']}/response")
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if command.properties.get("CorrelationData"):
            props.CorrelationData = command.properties["CorrelationData"]
        props.ContentType = "application/json"
        self._client.publish(topic, orjson.dumps(answer), qos=1, properties=props)

    def wait_for(self, count: int, *, timeout: float = 10, what: str = "commands") -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = list(self.commands if what == "commands" else self.broadcasts)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise TimeoutError(f"{self.device_id} got {len(got)} {what}, not {count}, within {timeout} s")


class Inbox:
    """What Event Grid routing sees: an MQTT v5 client subscribed to ``topics`` (at
    QoS 1) that keeps every message that arrives until it is taken."""

    def __init__(self, broker_url: str, topics: list[str], *, client_id: str, timeout: float = 10,
                 tls: TlsClient | None = None) -> None:
        self._pending: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if urlsplit(broker_url).scheme == "mqtts":
            self._client.tls_set_context(_tls_context(client_id, tls))
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.on_message = self._on_message
        host, port = _address(broker_url)
        self._client.connect(host, port)
        self._client.loop_start()
        self._client.subscribe([(topic, 1) for topic in topics])
        if not subscribed.wait(timeout):
            raise TimeoutError(f"{client_id} was not subscribed to {topics} within {timeout} s")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self._pending.append((message.topic, bytes(message.payload)))

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def take(self) -> list[tuple[str, bytes]]:
        """Every (topic, payload) that arrived since the last take, in arrival order."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class ResponseRouter:
    """Devices' answers from the broker to ``command_responses``, as Event Grid
    routing delivers them (routed CloudEvents in Event Hub batches)."""

    def __init__(self, broker_url: str, *, hub: str = "command-responses") -> None:
        from standins.eventhub_factory import Partition

        self.partition = Partition(hub, "0", first_enqueued=datetime.now(UTC))
        self._inbox = Inbox(broker_url, ["devices/+/commands/+/response"], client_id=f"router-{id(self)}")

    def close(self) -> None:
        self._inbox.close()

    async def deliver(self, *, expect: int = 0, wait: float = 10) -> int:
        """Route the answers received so far (waiting for at least ``expect``) to
        ``command_responses`` as one batch; returns how many were routed."""
        from standins.eventhub_factory import routed_body
        from standins.invoke import InvocationContext, retry_policy, user_function

        deadline = time.monotonic() + wait
        while True:  # messages arrive on paho's thread: look every 20 ms
            if len(self._inbox) >= expect or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        taken = self._inbox.take()
        if not taken:
            return 0
        now = datetime.now(UTC)
        sequence = self.partition.publish([routed_body(orjson.loads(payload), topic=topic, at=now)
                                           for topic, payload in taken])
        policy = retry_policy("command_responses")
        await user_function("command_responses")(
            self.partition.deliver(sequence),
            InvocationContext("command_responses", max_retry_count=int(policy["max_retry_count"])))
        return len(taken)
