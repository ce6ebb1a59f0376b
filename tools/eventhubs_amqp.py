"""A stand-in for the Event Hubs service that the real ``azure-eventhub`` producer talks
to over AMQP 1.0, on loopback, through an emulator-style connection string
(``Endpoint=sb://127.0.0.1:PORT;SharedAccessKeyName=...;SharedAccessKey=...;
UseDevelopmentEmulator=true``: plain TCP and SASL ANONYMOUS, as the SDK does for the
emulator; the SAS key is proven in claims-based security, below).

The protocol engine is Qpid Proton's (``python-qpid-proton``), driven by asyncio: bytes
from the socket are pushed into a proton ``Transport`` and its output written back. What
the producer does, and what this checks:

- claims-based security: a ``put-token`` request on ``$cbs`` carrying a shared access
  signature for ``sb://{namespace}/{hub}`` signed with the key of the connection string
  (HMAC-SHA256 of the URL-encoded audience, a line feed and the expiry); answered with
  ``status-code`` 200, or 401 for a bad signature, another key name or an expired token;
- ``$management``: the READ of ``com.microsoft:eventhub`` the producer makes before it
  sends (its partition ids), with a valid ``security_token``; an unknown hub is a 404;
- a sender link to ``{hub}`` (no partition: the service assigns one by partition key);
  a hub the namespace does not have is refused with ``amqp:not-found`` as the service
  refuses it; the link's maximum message size is announced (1 MB, Standard);
- batched messages (``EventDataBatch``: one AMQP message whose data sections are the
  encoded events, the partition key in the ``x-opt-partition-key`` message annotation).
  Each event must be a routed CloudEvent for that hub as Event Grid delivers it
  (content type ``application/cloudevents+json; charset=utf-8``, the CloudEvents AMQP
  binding's structured mode; ``type`` ``MQTT.EventPublished``; a ``subject`` that is a
  device topic of the hub; ``deviceid`` and ``clientrole`` enrichments; ``data`` or
  ``data_base64``), and the partition key must be its ``deviceid``. A batch that breaks the contract is
  rejected whole (``amqp:precondition-failed`` with the reason), as the service rejects a
  batch it cannot take; one that keeps it is accepted.

Accepted events get per-partition sequence numbers, offsets and enqueued times in
:class:`tools.eventhub_factory.Partition` logs; :meth:`EventHubsStandIn.pump` hands each
partition's new events to the hub's function as batches built by the library's own
converter, retried by the function's retry policy, as the Functions host does.

Proton writes the fields of a performative only up to its last non-null one (which AMQP
allows); the SDK's decoder needs every field of ``open``, ``begin``, ``attach`` and the
others, so outgoing frames are padded with nulls to their full field count (what the
service sends), and errors carry an ``info`` map (the SDK reads it too). Nothing else is
changed on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote_plus

import orjson
from proton import Collector, Condition, Connection, Data, Delivery, Event, Link, Message, Transport, symbol, timestamp

from tools.eventhub_factory import (
    CLIENT_ROLE_ENRICHMENT,
    DEVICE_ID_ENRICHMENT,
    DEVICE_ROLE,
    ROUTED_EVENT_TYPE,
    Partition,
)
from tools.invoke import deliver
from tools.simulate.stand_in import HUB_PARTITIONS, hub_partition

log = logging.getLogger("tools.eventhubs_amqp")

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
MAX_MESSAGE_BYTES = 1024 * 1024
PARTITION_KEY = symbol("x-opt-partition-key")
CBS = "$cbs"
MANAGEMENT = "$management"
CREATED_AT = datetime(2026, 11, 20, tzinfo=UTC)  # when the stand-in's hubs "were created"
HUB_SUFFIX = {"telemetry": "/telemetry", "inference": "/inference", "command-responses": "/response"}

# The field counts of the AMQP 1.0 performatives by descriptor code (the spec's lists).
_FIELDS = {0x10: 10, 0x11: 8, 0x12: 14, 0x13: 11, 0x14: 11, 0x15: 6, 0x16: 3, 0x17: 1, 0x18: 1}
_CREDIT = 100
# An error's info, so that proton writes its every field (the SDK reads info too).
_INFO: Any = {symbol("stand-in"): "event-hubs"}


def connection_string(port: int, *, key_name: str = "simulator", key: str = "c2ltdWxhdG9yLWtleQ==") -> str:
    """The emulator-style connection string of a stand-in on ``port``."""
    return (f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName={key_name};SharedAccessKey={key};"
            "UseDevelopmentEmulator=true")


def pad_performative(frame: bytes) -> bytes:
    """An AMQP frame with its performative's list padded with nulls to its full field
    count (frames of other kinds, and lists already full, unchanged)."""
    doff = frame[4] * 4
    body = frame[doff:]
    if frame[5] != 0 or len(body) < 4 or body[0] != 0x00 or body[1] != 0x53 or body[2] not in _FIELDS:
        return frame
    wanted = _FIELDS[body[2]]
    kind = body[3]
    if kind == 0x45:  # list0
        count, items, rest = 0, b"", body[4:]
    elif kind == 0xC0:  # list8: size, count
        size, count = body[4], body[5]
        items, rest = body[6:5 + size], body[5 + size:]
    elif kind == 0xD0:  # list32
        size, count = struct.unpack(">II", body[4:12])
        items, rest = body[12:8 + size], body[8 + size:]
    else:
        return frame
    if count >= wanted:
        return frame
    items += b"\x40" * (wanted - count)
    encoded = b"\xd0" + struct.pack(">II", len(items) + 4, wanted) + items
    new_body = body[:3] + encoded + rest
    return struct.pack(">I", doff + len(new_body)) + frame[4:doff] + new_body


class _Padder:
    """Proton's output stream, frame by frame, with performatives padded (the SASL
    layer's header and frames, and the AMQP header, pass as they are)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while len(self._buffer) >= 8:
            if self._buffer.startswith(b"AMQP"):
                out.append(self._buffer[:8])
                self._buffer = self._buffer[8:]
                continue
            size = struct.unpack(">I", self._buffer[:4])[0]
            if len(self._buffer) < size:
                break
            out.append(pad_performative(self._buffer[:size]))
            self._buffer = self._buffer[size:]
        return b"".join(out)


class ContractError(ValueError):
    """A batch the service (or Event Grid's contract) would not take, with why."""


def _sections(encoded: bytes) -> list[tuple[int, Any]]:
    """The sections of an encoded AMQP message: (descriptor code, value)."""
    found = []
    while encoded:
        data = Data()
        consumed = data.decode(encoded)
        value: Any = data.get_object()
        inner = value.value  # a binary is a view into ``data``'s buffer: copy it before ``data`` goes
        found.append((int(value.descriptor), bytes(inner) if isinstance(inner, memoryview) else inner))
        encoded = encoded[consumed:]
    return found


def check_event(hub: str, message: Message, partition_key: str) -> dict[str, Any]:
    """One event of a batch against the contract; the CloudEvent."""
    if message.content_type != CONTENT_TYPE:
        # proton reads a missing content type as the symbol 'None'
        given = None if str(message.content_type or "None") == "None" else str(message.content_type)
        raise ContractError(f"content type {given}, not {CONTENT_TYPE}")
    body = message.body
    if not isinstance(body, bytes | memoryview):
        raise ContractError(f"the body is {type(body).__name__}, not one data section")
    try:
        document = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as error:
        raise ContractError(f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ContractError("the body is not a JSON object (a structured CloudEvent)")
    for name, wanted in (("specversion", "1.0"), ("type", ROUTED_EVENT_TYPE), (CLIENT_ROLE_ENRICHMENT, DEVICE_ROLE)):
        if document.get(name) != wanted:
            raise ContractError(f"{name} is {document.get(name)!r}, not {wanted!r}")
    for name in ("id", "source", "time", "subject", DEVICE_ID_ENRICHMENT):
        if not isinstance(document.get(name), str) or not document[name]:
            raise ContractError(f"the CloudEvent has no {name}")
    subject, device = document["subject"], document[DEVICE_ID_ENRICHMENT]
    if not subject.startswith(f"devices/{device}/") or not subject.endswith(HUB_SUFFIX[hub]):
        raise ContractError(f"subject {subject!r} is no topic of device {device!r} that routing sends to {hub}")
    if ("data" in document) == ("data_base64" in document):
        raise ContractError("the CloudEvent needs data (JSON, MQTT v5) or data_base64 (binary), one of them")
    if device != partition_key:
        raise ContractError(f"partition key {partition_key!r} is not the deviceid {device!r}")
    return dict(document)


def check_batch(hub: str, encoded: bytes) -> tuple[str, list[tuple[bytes, dict[str, Any]]]]:
    """A batched message: its partition key and its events (body, application
    properties), each checked."""
    sections = _sections(encoded)
    annotations = next((value for code, value in sections if code == 0x72), None) or {}
    partition_key = annotations.get(PARTITION_KEY)
    if not isinstance(partition_key, str) or not partition_key:
        raise ContractError("no x-opt-partition-key: Event Grid delivers with the deviceid as the partition key")
    events: list[tuple[bytes, dict[str, Any]]] = []
    for code, value in sections:
        if code != 0x75:
            continue
        inner = Message()
        inner.decode(bytes(value))
        check_event(hub, inner, partition_key)
        events.append((bytes(inner.body), dict(inner.properties or {})))  # type: ignore[arg-type]
    if not events:
        raise ContractError("a batch without events")
    return partition_key, events


def sas_signature(audience: str, expiry: str, key: str) -> str:
    """The shared access signature of ``audience`` until ``expiry`` with ``key``."""
    digest = hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class EventHubsStandIn:
    """The service: a namespace with ``hubs`` of ``partitions`` partitions each."""

    key_name: str = "simulator"
    key: str = "c2ltdWxhdG9yLWtleQ=="
    hubs: tuple[str, ...] = ("telemetry", "inference", "command-responses")
    logs: dict[tuple[str, str], Partition] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # why each refused batch or token was refused
    tokens: list[str] = field(default_factory=list)  # audiences authorised
    port: int = 0
    # Where each partition's log starts: the archive keeps a watermark per hub and partition,
    # so a stand-in started again against the same storage must go on after the last one's
    # numbers, as the same hub would.
    first_sequence: int = 0

    @property
    def connection_string(self) -> str:
        return connection_string(self.port, key_name=self.key_name, key=self.key)

    def accepted(self) -> int:
        return sum(len(log.log) for log in self.logs.values())

    # ----------------------------------------------------------------- the wire

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[EventHubsStandIn]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection()
        transport = Transport(Transport.SERVER)
        transport.bind(connection)
        collector = Collector()
        connection.collect(collector)
        padder = _Padder()
        authorised: set[str] = set()
        try:
            while True:
                data = await reader.read(65536)
                ended = not data
                if ended:
                    transport.close_tail()
                while True:  # proton takes at most its capacity at a time: the rest once it read that
                    room = transport.capacity()
                    if data and room > 0:
                        transport.push(data[:room])
                        data = data[room:]
                    self._events(collector, authorised)
                    pending = transport.pending()
                    if pending > 0:
                        writer.write(padder.feed(transport.peek(pending) or b""))
                        transport.pop(pending)
                        await writer.drain()
                    if not data or room <= 0:
                        break
                if ended or transport.closed or data:  # bytes it cannot take: the connection ends
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _events(self, collector: Collector, authorised: set[str]) -> None:
        while (event := collector.peek()) is not None:
            self._event(event, authorised)
            collector.pop()

    def _event(self, event: Any, authorised: set[str]) -> None:  # proton's Event types its parts loosely
        kind = event.type
        if kind == Event.CONNECTION_REMOTE_OPEN:
            event.connection.container = f"stand-in-{uuid.uuid4()}"
            event.connection.open()
        elif kind == Event.SESSION_REMOTE_OPEN:
            event.session.open()
        elif kind == Event.LINK_REMOTE_OPEN:
            self._attach(event.link)
        elif kind == Event.DELIVERY and event.link.is_receiver:
            self._delivery(event.link, event.delivery, authorised)
        elif kind == Event.LINK_REMOTE_CLOSE:
            event.link.close()
        elif kind == Event.SESSION_REMOTE_CLOSE:
            event.session.close()
        elif kind == Event.CONNECTION_REMOTE_CLOSE:
            event.connection.close()

    def _attach(self, link: Any) -> None:
        address = (link.remote_target.address if link.is_receiver else link.remote_source.address) or ""
        hub = address.rsplit("/", 1)[-1]
        if link.is_receiver:
            link.target.address = address
            link.source.address = link.remote_source.address
        else:
            link.source.address = address
            link.target.address = link.remote_target.address
        if address not in (CBS, MANAGEMENT) and (link.is_sender or hub not in self.hubs):
            why = (f"The messaging entity '{address}' could not be found." if hub not in self.hubs
                   else f"this stand-in only receives: no receiver of '{address}'")
            self.rejected.append(why)
            link.open()
            link.condition = Condition("amqp:not-found", why, _INFO)
            link.close()
            return
        link.max_message_size = MAX_MESSAGE_BYTES
        link.open()
        if link.is_receiver:
            link.flow(_CREDIT)

    def _delivery(self, link: Any, delivery: Any, authorised: set[str]) -> None:
        if delivery.partial or not delivery.readable:
            return
        if link.state & Link.LOCAL_CLOSED:  # sent before the client saw the refusal of its attach
            link.recv(delivery.pending)
            delivery.settle()
            link.advance()
            return
        encoded = link.recv(delivery.pending) or b""
        address = link.target.address or ""
        try:
            if address == CBS:
                self._put_token(link, encoded, authorised)
                outcome = Delivery.ACCEPTED
            elif address == MANAGEMENT:
                self._read(link, encoded)
                outcome = Delivery.ACCEPTED
            else:
                hub = address.rsplit("/", 1)[-1]
                if not any(audience.endswith(f"/{hub}") for audience in authorised):
                    raise ContractError(f"no put-token for {hub} on this connection (claims-based security)")
                key, events = check_batch(hub, encoded)
                self._append(hub, key, events)
                outcome = Delivery.ACCEPTED
        except ContractError as error:
            self.rejected.append(str(error))
            delivery.local.condition = Condition("amqp:precondition-failed", str(error), _INFO)
            outcome = Delivery.REJECTED
        delivery.update(outcome)
        delivery.settle()
        link.advance()
        if link.credit < _CREDIT // 2:
            link.flow(_CREDIT - link.credit)

    def _put_token(self, link: Any, encoded: bytes, authorised: set[str]) -> None:
        """``$cbs``: a shared access signature for an audience (the hub's URL)."""
        request = Message()
        request.decode(encoded)
        props: dict[Any, Any] = request.properties or {}
        audience = str(props.get("name", ""))
        if props.get("operation") != "put-token" or props.get("type") != "servicebus.windows.net:sastoken":
            status, description = 400, f"not a put-token of a SAS token: {props}"
        else:
            status, description = self._check_token(str(request.body), audience)
        if status == 200:
            authorised.add(audience)
            self.tokens.append(audience)
        _answer(link, request, status, description)

    def _check_token(self, token: str, audience: str | None) -> tuple[int, str]:
        fields = {k: v[0] for k, v in parse_qs(token.removeprefix("SharedAccessSignature "),
                                             keep_blank_values=True).items()}
        status, description = 200, "OK"
        if (audience is not None and fields.get("sr") != audience) or fields.get("skn") != self.key_name:
            status, description = 401, f"the token is not for {audience} with the key {self.key_name}"
        elif not fields.get("se", "").isdigit() or int(fields["se"]) < time.time():
            status, description = 401, "the token expired (or has no expiry se=)"
        elif not hmac.compare_digest(fields.get("sig", ""),
                                     sas_signature(fields.get("sr", ""), fields["se"], self.key)):
            status, description = 401, "InvalidSignature: the token's signature does not match the key"
        if status != 200:
            self.rejected.append(description)
        return status, description

    def _read(self, link: Any, encoded: bytes) -> None:
        """``$management``: READ of a hub's properties (the producer asks for its
        partition ids before it sends), with a valid ``security_token``."""
        request = Message()
        request.decode(encoded)
        props: dict[Any, Any] = request.properties or {}
        hub = str(props.get("name", ""))
        body: dict[str, Any] | None = None
        if props.get("operation") != "READ" or props.get("type") != "com.microsoft:eventhub":
            status, description = 400, f"only READ of com.microsoft:eventhub is served here, not {props}"
            self.rejected.append(description)
        elif hub not in self.hubs:
            status, description = 404, f"The messaging entity '{hub}' could not be found."
            self.rejected.append(description)
        else:
            status, description = self._check_token(str(props.get("security_token", "")), None)
            body = {"name": hub, "type": "com.microsoft:eventhub",
                    "created_at": timestamp(int(CREATED_AT.timestamp() * 1000)),
                    "partition_count": len(HUB_PARTITIONS), "partition_ids": list(HUB_PARTITIONS)}
        _answer(link, request, status, description, body if status == 200 else None)

    def _append(self, hub: str, key: str, events: list[tuple[bytes, dict[str, Any]]]) -> None:
        partition_id = hub_partition(key)
        now = datetime.now(UTC)
        log = self.logs.setdefault((hub, partition_id), Partition(hub, partition_id, first_enqueued=now,
                                                                  first_sequence=self.first_sequence))
        at = max(now, log.log[-1].enqueued) if log.log else now
        log.publish([body for body, _ in events], partition_keys=[key] * len(events),
                    properties=[props for _, props in events], enqueued=[at] * len(events))

    # ----------------------------------------------------------------- the Functions host's side

    async def pump(self, stop: asyncio.Event, *, period: float = 0.3, max_batch: int = 100,
                   on_batch: Callable[[str, int], None] | None = None) -> None:
        """Until ``stop``: each partition's new events to its hub's function, in batches
        of at most ``max_batch``, retried by the function's retry policy."""
        delivered: dict[tuple[str, str], int] = {}
        while True:
            for key, log in list(self.logs.items()):
                start = delivered.get(key, log.first_sequence)
                end = log.next_sequence
                while start < end:
                    stop_at = min(start + max_batch, end)
                    await deliver(log, range(start, stop_at))
                    if on_batch is not None:
                        on_batch(log.hub, stop_at - start)
                    start = stop_at
                delivered[key] = start
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)


def _answer(link: Any, request: Message, status: int, description: str, body: Any = None) -> None:
    """The reply to a request on ``$cbs`` or ``$management``: on this connection's link
    from that node, correlated by the request's message id."""
    node = link.target.address
    sender = next((c for c in _links(link.connection) if c.is_sender and c.source.address == node), None)
    if sender is None:
        raise ContractError(f"a request to {node} without a link to answer on (a receiver from {node})")
    reply = Message(correlation_id=request.id, body=body,
                    properties={"status-code": status, "status-description": description})
    sender.delivery(str(uuid.uuid4()))
    sender.send(reply.encode())
    sender.advance()


def _links(connection: Any) -> list[Any]:
    found: list[Any] = []
    link = connection.link_head(0)
    while link is not None:
        found.append(link)
        link = link.next(0)
    return found
