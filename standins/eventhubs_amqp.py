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

Accepted events get per-partition sequence numbers, offsets and enqueued times (whole
milliseconds: the service stamps an AMQP timestamp) in
:class:`standins.eventhub_factory.Partition` logs; :meth:`EventHubsStandIn.pump` hands each
partition's new events to the hub's function as batches built by the library's own
converter, retried by the function's retry policy, as the Functions host does.

What the ``EventHubConsumerClient`` does, and what this checks:

- claims-based security as above, for the audience ``sb://{namespace}/{hub}`` or
  ``sb://{namespace}/{hub}/consumergroups/{group}`` (the consumer's); a receiver without
  one is refused with ``amqp:unauthorized-access`` (the 'Listen' claim);
- ``$management``: the READ of ``com.microsoft:partition`` (``name``, ``partition``):
  ``begin_sequence_number``, ``last_enqueued_sequence_number``, ``last_enqueued_offset``,
  ``last_enqueued_time_utc``, ``is_partition_empty``; a partition the hub does not have
  is a 400;
- a receiver link (our sender) from ``{hub}/ConsumerGroups/{group}/Partitions/{id}``
  (the SDK writes it as ``amqps://{host}/...``): a hub or consumer group the namespace
  does not have is ``amqp:not-found``, a partition id it does not have
  ``com.microsoft:argument-out-of-range``, a sixth receiver of one partition and group
  ``amqp:resource-limit-exceeded`` (the service allows five), an epoch (exclusive)
  receiver ``amqp:not-implemented`` (none is kept here);
- its starting position, the source's ``apache.org:selector-filter:string`` filter:
  ``amqp.annotation.x-opt-sequence-number``, ``x-opt-offset`` (``-1`` the start,
  ``@latest`` the end) or ``x-opt-enqueued-time`` (milliseconds), with ``>`` or ``>=``
  and the value quoted; any other expression is ``com.microsoft:argument-error``, a
  sequence number past the next one to be enqueued (or an offset past the last one)
  ``com.microsoft:argument-out-of-range`` with the service's words ("The supplied
  sequence number '9' is invalid. The last sequence number in the system is '4'"), a
  position before the oldest event held starts at the oldest;
- link credit: as many events as the client granted, each one message, settled as
  sent: its original body (one data section), application properties and content type,
  with the annotations ``x-opt-sequence-number`` (long), ``x-opt-offset`` (string),
  ``x-opt-enqueued-time`` (timestamp) and ``x-opt-partition-key`` (string, when it has
  one); events enqueued later reach a waiting receiver as they arrive.

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
import re
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import orjson
from proton import (
    Collector,
    Condition,
    Connection,
    Data,
    Delivery,
    Described,
    Event,
    Link,
    Message,
    Transport,
    symbol,
    timestamp,
    ulong,
)

from standins.eventhub_factory import (
    CLIENT_ROLE_ENRICHMENT,
    DEVICE_ID_ENRICHMENT,
    DEVICE_ROLE,
    HUB_PARTITIONS,
    ROUTED_EVENT_TYPE,
    Partition,
    Published,
    hub_partition,
)
from standins.invoke import deliver

log = logging.getLogger("standins.eventhubs_amqp")

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
MAX_MESSAGE_BYTES = 1024 * 1024
PARTITION_KEY = symbol("x-opt-partition-key")
SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
OFFSET = symbol("x-opt-offset")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
SELECTOR_FILTER = symbol("apache.org:selector-filter:string")
SELECTOR_FILTER_CODE = ulong(0x0000013700000000A)  # the same filter type by its numeric descriptor
EPOCH = symbol("com.microsoft:epoch")
# Event Hubs quotas: at most 5 concurrent receivers per partition and consumer group.
MAX_RECEIVERS = 5
CBS = "$cbs"
MANAGEMENT = "$management"
CREATED_AT = datetime(2026, 11, 20, tzinfo=UTC)  # when the stand-in's hubs "were created"
HUB_SUFFIX = {"telemetry": "/telemetry", "inference": "/inference", "command-responses": "/response"}

# The field counts of the AMQP 1.0 performatives by descriptor code (the spec's lists).
_FIELDS = {0x10: 10, 0x11: 8, 0x12: 14, 0x13: 11, 0x14: 11, 0x15: 6, 0x16: 3, 0x17: 1, 0x18: 1}
_CREDIT = 100
# An error's info, so that proton writes its every field (the SDK reads info too).
_INFO: Any = {symbol("stand-in"): "event-hubs"}
_SELECTOR = re.compile(r"amqp\.annotation\.(x-opt-sequence-number|x-opt-offset|x-opt-enqueued-time) (>=|>) '([^']*)'")
_SOURCE = re.compile(r"(?:amqps?://[^/]+/)?([^/]+)/ConsumerGroups/([^/]+)/Partitions/([^/]+)", re.IGNORECASE)
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


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


class Refusal(ValueError):
    """A link the service would not attach: the AMQP error condition and its description."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


@dataclass(eq=False)
class _Reader:
    """One consumer's receiver link (our sender) on a partition, and the sequence
    number of the next event it gets."""

    link: Any
    hub: str
    group: str
    partition_id: str
    next_sequence: int


@dataclass(eq=False)
class _Peer:
    """One client connection: the audiences it proved, its receivers, and the event
    that wakes its loop when a partition it may read grows."""

    authorised: set[str] = field(default_factory=set)
    readers: list[_Reader] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


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


def selector(filters: Any) -> str:
    """The expression of a receiver source's ``apache.org:selector-filter:string`` (a
    proton ``Data``: the filter set as the client sent it)."""
    filters.rewind()
    found: Any = filters.get_object() if filters.next() else None
    if not found:
        raise Refusal("amqp:not-implemented", "no starting position: the receiver's source needs an "
                      "apache.org:selector-filter:string filter")
    if not isinstance(found, dict) or set(found) != {SELECTOR_FILTER}:
        raise Refusal("amqp:not-implemented", f"filters {sorted(map(str, found))}: only "
                      "apache.org:selector-filter:string is served")
    value = found[SELECTOR_FILTER]
    if not isinstance(value, Described) or value.descriptor not in (SELECTOR_FILTER, SELECTOR_FILTER_CODE) \
            or not isinstance(value.value, str):
        raise Refusal("com.microsoft:argument-error", f"the selector filter {value!r} is not a described string")
    return value.value


def start_of(log: Partition, expression: str) -> int:
    """The sequence number a receiver whose filter is ``expression`` starts at."""
    match = _SELECTOR.fullmatch(expression)
    if match is None:
        raise Refusal("com.microsoft:argument-error", f"the filter expression {expression!r} is not "
                      "amqp.annotation.x-opt-(sequence-number|offset|enqueued-time) (>|>=) 'value'")
    name, operator, value = match.groups()
    inclusive = operator == ">="
    end = log.next_sequence
    if name == "x-opt-offset" and value in ("-1", "@latest"):
        return log.first_sequence if value == "-1" else end
    try:
        number = int(value)
    except ValueError:
        raise Refusal("com.microsoft:argument-error", f"the filter value {value!r} is not a number") from None
    if name == "x-opt-sequence-number":
        start = number if inclusive else number + 1
        if start > end:
            raise Refusal("com.microsoft:argument-out-of-range", f"The supplied sequence number '{number}' is "
                          f"invalid. The last sequence number in the system is '{end - 1}'")
        return max(start, log.first_sequence)  # expired events: the oldest one held comes first
    if name == "x-opt-offset":
        last = log.log[-1].offset if log.log else -1
        if number > last:
            raise Refusal("com.microsoft:argument-out-of-range", f"The supplied offset '{number}' is invalid. "
                          f"The last offset in the system is '{last}'")
        return next((e.sequence_number for e in log.log
                     if e.offset > number or (inclusive and e.offset == number)), end)
    return next((e.sequence_number for e in log.log
                 if (ms := milliseconds(e.enqueued)) > number or (inclusive and ms == number)), end)


def milliseconds(moment: datetime) -> int:
    """A time as an AMQP timestamp: whole milliseconds since the Unix epoch."""
    return (moment - _EPOCH_START) // timedelta(milliseconds=1)


def event_message(record: Published) -> bytes:
    """One event as a receiver gets it: the original body, properties and content type
    (every event taken had the contract's), and the service's annotations."""
    annotations: dict[Any, Any] = {SEQUENCE_NUMBER: record.sequence_number, OFFSET: str(record.offset),
                                   ENQUEUED_TIME: timestamp(milliseconds(record.enqueued))}
    if record.partition_key is not None:
        annotations[PARTITION_KEY] = record.partition_key
    message = Message(body=record.body, inferred=True, content_type=CONTENT_TYPE, annotations=annotations,
                      properties=dict(record.properties) or None)
    return message.encode()


def covers(audience: str, hub: str, group: str) -> bool:
    """Whether a token for ``audience`` lets a client read ``hub``'s consumer group
    ``group`` (the namespace's, the hub's or the consumer group's own)."""
    path = urlsplit(audience).path.lower().rstrip("/")
    return path in ("", f"/{hub.lower()}", f"/{hub.lower()}/consumergroups/{group.lower()}")


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
    consumer_groups: tuple[str, ...] = ("$Default",)
    logs: dict[tuple[str, str], Partition] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # why each refused batch or token was refused
    tokens: list[str] = field(default_factory=list)  # audiences authorised
    receivers: list[str] = field(default_factory=list)  # each attached receiver's starting position
    sent: int = 0  # events sent to receivers
    port: int = 0
    # Where each partition's log starts: the archive keeps a watermark per hub and partition,
    # so a stand-in started again against the same storage must go on after the last one's
    # numbers, as the same hub would.
    first_sequence: int = 0
    _peers: list[_Peer] = field(default_factory=list, repr=False)

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
        peer = _Peer()
        self._peers.append(peer)
        reading: asyncio.Future[bytes] | None = None
        try:
            while True:
                # Bytes from the client, or events enqueued for its receivers.
                reading = reading or asyncio.ensure_future(reader.read(65536))
                waking = asyncio.ensure_future(peer.wake.wait())
                await asyncio.wait((reading, waking), return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
                peer.wake.clear()
                data, ended = b"", False
                if reading.done():
                    data, reading = reading.result(), None
                    ended = not data
                    if ended:
                        transport.close_tail()
                while True:  # proton takes at most its capacity at a time: the rest once it read that
                    room = transport.capacity()
                    if data and room > 0:
                        transport.push(data[:room])
                        data = data[room:]
                    self._events(collector, peer)
                    self._feed(peer)
                    while (pending := transport.pending()) > 0:  # proton hands its output 64 KiB at a time
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
            if reading is not None:
                reading.cancel()
            self._peers.remove(peer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _events(self, collector: Collector, peer: _Peer) -> None:
        while (event := collector.peek()) is not None:
            self._event(event, peer)
            collector.pop()

    def _event(self, event: Any, peer: _Peer) -> None:  # proton's Event types its parts loosely
        kind = event.type
        if kind == Event.CONNECTION_REMOTE_OPEN:
            event.connection.container = f"stand-in-{uuid.uuid4()}"
            event.connection.open()
        elif kind == Event.SESSION_REMOTE_OPEN:
            event.session.open()
        elif kind == Event.LINK_REMOTE_OPEN:
            self._attach(event.link, peer)
        elif kind == Event.DELIVERY and event.link.is_receiver:
            self._delivery(event.link, event.delivery, peer.authorised)
        elif kind == Event.LINK_REMOTE_CLOSE:
            event.link.close()
        elif kind == Event.SESSION_REMOTE_CLOSE:
            event.session.close()
        elif kind == Event.CONNECTION_REMOTE_CLOSE:
            event.connection.close()

    def _attach(self, link: Any, peer: _Peer) -> None:
        address = (link.remote_target.address if link.is_receiver else link.remote_source.address) or ""
        if link.is_sender and address not in (CBS, MANAGEMENT):
            self._attach_reader(link, peer, address)
            return
        hub = address.rsplit("/", 1)[-1]
        if link.is_receiver:
            link.target.address = address
            link.source.address = link.remote_source.address
        else:
            link.source.address = address
            link.target.address = link.remote_target.address
        if address not in (CBS, MANAGEMENT) and hub not in self.hubs:
            _refuse(self, link, Refusal("amqp:not-found", f"The messaging entity '{address}' could not be found."))
            return
        link.max_message_size = MAX_MESSAGE_BYTES
        link.open()
        if link.is_receiver:
            link.flow(_CREDIT)

    def _attach_reader(self, link: Any, peer: _Peer, address: str) -> None:
        """A consumer's receiver: checked, then fed from its starting position."""
        link.source.address = address
        link.target.address = link.remote_target.address
        try:
            match = _SOURCE.fullmatch(address)
            groups = {g.lower() for g in self.consumer_groups}
            if match is None or match[1] not in self.hubs or match[2].lower() not in groups:
                raise Refusal("amqp:not-found", f"The messaging entity '{address}' could not be found.")
            hub, group, partition_id = match.groups()
            if not any(covers(audience, hub, group) for audience in peer.authorised):
                raise Refusal("amqp:unauthorized-access", "Unauthorized access. 'Listen' claim(s) are required to "
                              f"perform this operation. Resource: '{address}'.")
            if partition_id not in HUB_PARTITIONS:
                raise Refusal("com.microsoft:argument-out-of-range", _invalid_partition())
            if EPOCH in (link.remote_properties or {}):
                raise Refusal("amqp:not-implemented", "an epoch (exclusive) receiver: this stand-in keeps none")
            readers = [r for p in self._peers for r in p.readers if (r.hub, r.group.lower(), r.partition_id) ==
                       (hub, group.lower(), partition_id) and not r.link.state & Link.LOCAL_CLOSED]
            if len(readers) >= MAX_RECEIVERS:
                raise Refusal("amqp:resource-limit-exceeded", "Exceeded the maximum number of allowed receivers per "
                              f"partition in a consumer group which is {MAX_RECEIVERS}.")
            expression = selector(link.remote_source.filter)
            start = start_of(self._log(hub, partition_id), expression)
        except Refusal as refusal:
            _refuse(self, link, refusal)
            return
        link.source.filter.copy(link.remote_source.filter)  # the filter in force
        link.open()
        peer.readers.append(_Reader(link, hub, group, partition_id, start))
        self.receivers.append(expression)

    def _log(self, hub: str, partition_id: str) -> Partition:
        """A partition's log, made empty at its first use."""
        return self.logs.setdefault((hub, partition_id), Partition(
            hub, partition_id, first_enqueued=datetime.now(UTC), first_sequence=self.first_sequence))

    def _feed(self, peer: _Peer) -> None:
        """Each receiver of ``peer`` its next events, as many as it has credit for, each
        settled as sent."""
        for reader in list(peer.readers):
            link = reader.link
            if link.state & Link.LOCAL_CLOSED:
                peer.readers.remove(reader)
                continue
            log = self._log(reader.hub, reader.partition_id)
            while link.credit > 0 and reader.next_sequence < log.next_sequence:
                record = log.log[reader.next_sequence - log.first_sequence]
                delivery = link.delivery(str(record.sequence_number))
                link.send(event_message(record))
                link.advance()
                delivery.settle()
                reader.next_sequence += 1
                self.sent += 1

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
        partition ids before it sends) or of a partition's (the consumer's range), with a
        valid ``security_token``."""
        request = Message()
        request.decode(encoded)
        props: dict[Any, Any] = request.properties or {}
        hub, kind, partition_id = str(props.get("name", "")), props.get("type"), str(props.get("partition", ""))
        body: dict[str, Any] | None = None
        if props.get("operation") != "READ" or kind not in ("com.microsoft:eventhub", "com.microsoft:partition"):
            status, description = 400, f"only READ of com.microsoft:eventhub or :partition is served, not {props}"
            self.rejected.append(description)
        elif hub not in self.hubs:
            status, description = 404, f"The messaging entity '{hub}' could not be found."
            self.rejected.append(description)
        elif kind == "com.microsoft:partition" and partition_id not in HUB_PARTITIONS:
            status, description = 400, _invalid_partition()
            self.rejected.append(description)
        else:
            status, description = self._check_token(str(props.get("security_token", "")), None)
            if kind == "com.microsoft:partition":
                body = self._partition_properties(hub, partition_id)
            else:
                body = {"name": hub, "type": "com.microsoft:eventhub",
                        "created_at": timestamp(int(CREATED_AT.timestamp() * 1000)),
                        "partition_count": len(HUB_PARTITIONS), "partition_ids": list(HUB_PARTITIONS)}
        _answer(link, request, status, description, body if status == 200 else None)

    def _partition_properties(self, hub: str, partition_id: str) -> dict[str, Any]:
        """A partition's properties as the service reports them (an empty partition's
        last sequence number is the one before its first)."""
        log = self._log(hub, partition_id)
        last = log.log[-1] if log.log else None
        return {"name": hub, "type": "com.microsoft:partition", "partition": partition_id,
                "begin_sequence_number": log.first_sequence, "last_enqueued_sequence_number": log.next_sequence - 1,
                "last_enqueued_offset": str(last.offset) if last else "-1",
                "last_enqueued_time_utc": timestamp(milliseconds(last.enqueued) if last else 0),
                "is_partition_empty": last is None}

    def _append(self, hub: str, key: str, events: list[tuple[bytes, dict[str, Any]]]) -> None:
        partition_id = hub_partition(key)
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # an AMQP timestamp: milliseconds
        log = self._log(hub, partition_id)
        at = max(now, log.log[-1].enqueued) if log.log else now
        log.publish([body for body, _ in events], partition_keys=[key] * len(events),
                    properties=[props for _, props in events], enqueued=[at] * len(events))
        for peer in self._peers:  # their receivers may be waiting at the end
            peer.wake.set()

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


def _invalid_partition() -> str:
    return ("The specified partition is invalid for an EventHub partition sender or receiver. It should be between "
            f"{HUB_PARTITIONS[0]} and {HUB_PARTITIONS[-1]}.")


def _refuse(hubs: EventHubsStandIn, link: Any, refusal: Refusal) -> None:
    """Attach ``link`` and detach it at once with the error, as the service refuses one."""
    hubs.rejected.append(refusal.description)
    link.open()
    link.condition = Condition(refusal.condition, refusal.description, _INFO)
    link.close()


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
