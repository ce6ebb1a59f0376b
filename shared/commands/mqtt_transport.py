"""The ``mqtt`` transport: paho-mqtt 2, MQTT v5, one connection per worker process.

paho runs its network loop in its own thread (``loop_start``); its callbacks hand each
event to the asyncio loop with ``call_soon_threadsafe``, where the future of every
publish in flight is resolved by its message id. ``publish`` never blocks the event
loop (paho's ``publish`` only takes its lock and queues the packet).

A connection lives from its CONNACK to its first failure and is never revived. paho
keeps unacknowledged QoS 1 messages and resends them after a reconnect, and a command
already reported failed must not reach its device later. So a lost connection, a
refused CONNACK, or a CONNACK or PUBACK that does not come within the timeout fails
every publish in flight (transient) and discards the client with its queue; the next
publish connects again (clean start, the process's client id). While the broker is
down each publish therefore fails within the timeout, and the first one after it is
back succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from shared.commands.transport import Publication, PublishError

PUBLISH_TIMEOUT_SECONDS = 10.0
KEEPALIVE_SECONDS = 60
# PUBACK: reason codes from 0x80 are failures (MQTT 5.0, 3.4.2.1); only a quota may pass.
QUOTA_EXCEEDED = 0x97
# CONNACK refusals about the client itself, which the same settings meet again:
# unsupported protocol version, client id not valid, bad user name or password, not
# authorized, bad authentication method.
CONFIGURATION_REFUSALS = frozenset({0x84, 0x85, 0x86, 0x87, 0x8C})


def publish_properties(publication: Publication) -> Properties:
    """The PUBLISH properties the contract gives a command or a broadcast."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = publication.expiry_seconds
    properties.ContentType = publication.content_type
    if publication.response_topic is not None:
        properties.ResponseTopic = publication.response_topic
    if publication.correlation_data is not None:
        properties.CorrelationData = publication.correlation_data
    if publication.user_properties:
        properties.UserProperty = list(publication.user_properties)
    return properties


def puback_error(code: int, name: str) -> PublishError | None:
    """None for a success (any code below 0x80, "No matching subscribers" included)."""
    if code < 0x80:
        return None
    return PublishError(f"the MQTT broker refused the message: {name} (0x{code:02X})",
                        transient=code == QUOTA_EXCEEDED)


def connack_error(code: int, name: str) -> PublishError:
    transient = code not in CONFIGURATION_REFUSALS
    hint = "" if transient else "; check MQTT_BROKER_URL, MQTT_USERNAME and MQTT_PASSWORD"
    return PublishError(f"the MQTT broker refused the connection: {name} (0x{code:02X}){hint}", transient=transient)


def process_client_id() -> str:
    """Unique per process, so two instances never take over each other's session."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]
    return f"cloud-{host}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, *, username: str | None = None, password: str | None = None) -> BrokerAddress:
        """``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` (TLS, the system's CAs); the
        credentials given win over any ``user:password@`` in the URL."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        if username is None and password is None:
            username = unquote(parts.username) if parts.username is not None else None
            password = unquote(parts.password) if parts.password is not None else None
        return cls(host=parts.hostname or "", port=parts.port or (8883 if tls else 1883), tls=tls,
                   username=username, password=password)


def _copy(error: PublishError) -> PublishError:
    """One exception object per waiter (an exception raised in two tasks shares its traceback)."""
    return PublishError(error.reason, transient=error.transient, retry_after=error.retry_after)


class _Connection:
    """One paho client and its network thread, from CONNECT to the first failure."""

    def __init__(self, address: BrokerAddress, client_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.add_done_callback(_retrieve)
        self.pending: dict[int, asyncio.Future[None]] = {}
        self.failure: PublishError | None = None
        self._stopper: threading.Thread | None = None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
        if address.tls:
            client.tls_set_context(ssl.create_default_context())
        if address.username is not None or address.password is not None:
            client.username_pw_set(address.username, address.password)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client
        client.connect_async(address.host, address.port, keepalive=KEEPALIVE_SECONDS, clean_start=True)
        client.loop_start()

    # --- paho's thread: hand over to the event loop ------------------------------------

    def _soon(self, handler: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(handler, *args)

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                    _properties: Any) -> None:
        self._soon(self._connected, reason.value, reason.getName())

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._soon(self.fail, PublishError("could not connect to the MQTT broker (unreachable, refused, or TLS "
                                           "failed)", transient=True))

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                       _properties: Any) -> None:
        self._soon(self.fail, PublishError(f"the connection to the MQTT broker was lost ({reason.getName()})",
                                           transient=True))

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode,
                    _properties: Any) -> None:
        self._soon(self._acked, mid, reason.value, reason.getName())

    # --- the event loop -----------------------------------------------------------------

    def _connected(self, code: int, name: str) -> None:
        if code >= 0x80:
            self.fail(connack_error(code, name))
        elif not self.ready.done():
            self.ready.set_result(None)

    def _acked(self, mid: int, code: int, name: str) -> None:
        future = self.pending.pop(mid, None)
        if future is None or future.done():
            return
        error = puback_error(code, name)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def fail(self, error: PublishError) -> None:
        """Fail whatever waits on this connection and stop its client, queue and all."""
        if self.failure is not None:
            return
        for future in (self.ready, *self.pending.values()):
            if not future.done():
                future.set_exception(_copy(error))
        self.pending.clear()
        self.abandon(error)

    def abandon(self, error: PublishError) -> None:
        """Stop the client without touching the futures (they may belong to a closed loop)."""
        if self.failure is not None:
            return
        self.failure = error
        self._stopper = threading.Thread(target=self._stop, name="mqtt-transport-stop", daemon=True)
        self._stopper.start()

    def _stop(self) -> None:
        self.client.disconnect()  # also ends paho's loop when it is waiting to retry a connect
        self.client.loop_stop()

    async def stopped(self) -> None:
        if self._stopper is not None:
            await asyncio.to_thread(self._stopper.join)

    async def publish(self, topic: str, payload: bytes, properties: Properties, qos: int, retain: bool) -> None:
        await asyncio.shield(self.ready)
        if self.failure is not None:
            raise _copy(self.failure)
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except ValueError as exc:  # paho's checks: a wildcard in the topic, a payload too large
            raise PublishError(f"the message cannot be published: {exc}", transient=False) from exc
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # the connection dropped a moment ago
            error = PublishError(f"the MQTT client could not send the message ({mqtt.error_string(info.rc)})",
                                 transient=True)
            self.fail(error)
            raise _copy(error)
        future: asyncio.Future[None] = self.loop.create_future()
        future.add_done_callback(_retrieve)
        # paho's acknowledgement reaches this loop through call_soon_threadsafe, so it
        # runs after this line however fast the broker answers.
        self.pending[info.mid] = future
        await future


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark an exception as seen (a future nobody awaits any more would log it)."""
    if not future.cancelled():
        future.exception()


class MqttTransport:
    """Publishes at QoS 1 over the process's MQTT v5 connection, opened at first use."""

    def __init__(self, address: BrokerAddress, *, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout = timeout
        self.client_id = process_client_id()
        self._connection: _Connection | None = None

    @classmethod
    def from_url(cls, url: str, *, username: str | None = None, password: str | None = None,
                 timeout: float = PUBLISH_TIMEOUT_SECONDS) -> MqttTransport:
        return cls(BrokerAddress.from_url(url, username=username, password=password), timeout=timeout)

    async def publish(self, publication: Publication) -> None:
        await self.publish_message(publication.topic, publication.payload, publish_properties(publication))

    async def publish_message(self, topic: str, payload: bytes, properties: Properties, *, qos: int = 1,
                              retain: bool = False) -> None:
        """Any PUBLISH, acknowledged by the broker (at QoS 0: written to the socket)
        within the timeout, connecting first if need be; raises PublishError."""
        connection = self._current()
        try:
            async with asyncio.timeout(self.timeout):
                await connection.publish(topic, payload, properties, qos, retain)
        except TimeoutError:
            waited_for = "PUBACK" if connection.ready.done() else "CONNACK"
            error = PublishError(f"no {waited_for} from the MQTT broker within {self.timeout:g} s", transient=True)
            connection.fail(error)
            raise _copy(error) from None

    def _current(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is not None and connection.loop is not loop:
            # Built on another event loop (tests run several): it cannot wake this one.
            connection.abandon(PublishError("the event loop changed", transient=True))
        if connection is None or connection.failure is not None:
            connection = self._connection = _Connection(self.address, self.client_id, loop)
        return connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.fail(PublishError("the MQTT transport was closed", transient=True))
            await connection.stopped()
