"""The service itself: a namespace's hubs and their partitions' logs, each client
connection driven through proton's engine by asyncio, its links attached or refused and
its requests on ``$cbs`` and ``$management`` answered; and the Functions host's side,
which hands each partition's new events to the hub's function."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from proton import (
    Collector,
    Condition,
    Connection,
    Delivery,
    Event,
    Link,
    Message,
    Transport,
    symbol,
    timestamp,
)

from standins.eventhub_factory import HUB_PARTITIONS, Partition, hub_partition
from standins.eventhubs_amqp.batches import ContractError, check_batch
from standins.eventhubs_amqp.claims import connection_string, covers, sas_signature
from standins.eventhubs_amqp.consumers import Refusal, event_message, milliseconds, selector, start_of
from standins.eventhubs_amqp.frames import Padder
from standins.invoke import deliver

log = logging.getLogger("standins.eventhubs_amqp")

MAX_MESSAGE_BYTES = 1024 * 1024
EPOCH = symbol("com.microsoft:epoch")
# Event Hubs quotas: at most 5 concurrent receivers per partition and consumer group.
MAX_RECEIVERS = 5
CBS = "$cbs"
MANAGEMENT = "$management"
CREATED_AT = datetime(2026, 11, 20, tzinfo=UTC)  # when the stand-in's hubs "were created"
_CREDIT = 100
# An error's info, so that proton writes its every field (the SDK reads info too).
_INFO: Any = {symbol("stand-in"): "event-hubs"}
_SOURCE = re.compile(r"(?:amqps?://[^/]+/)?([^/]+)/ConsumerGroups/([^/]+)/Partitions/([^/]+)", re.IGNORECASE)


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
        padder = Padder()
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
