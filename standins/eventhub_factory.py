"""Event Hub batches exactly as the Functions host sends them to the Python worker for
a ``cardinality="many"`` trigger, and the CloudEvents the Event Grid MQTT broker routes
into the hubs. Used by the tests, the demo and the benchmark.

A :class:`Batch` is what the host sends over RPC: nothing here builds an
``EventHubEvent``; the worker runtime converts it (and so does :class:`Batch` when
read as a sequence, with the runtime's own conversion). What the host sends (the
Event Hubs extension's ``EventHubTriggerBindingStrategy.AddBindingData``, turned into
``TypedData`` by the host's ``ToRpc``; the Python worker announces ``TypedDataCollection``):

- the bodies: ``collection_bytes`` for ``data_type`` binary, ``collection_string``
  for string;
- ``SequenceNumberArray`` (long[], so ``collection_sint64``); ``OffsetArray`` and
  ``OffsetStringArray`` (string[], so ``collection_string``); ``PartitionKeyArray``
  (``collection_string`` too, which drops null and empty keys, so it does not line up
  with the events); ``EnqueuedTimeUtcArray``, ``PropertiesArray`` and
  ``SystemPropertiesArray`` as JSON; ``PartitionContext`` and
  ``TriggerPartitionContext`` as JSON objects (``FullyQualifiedNamespace``,
  ``EventHubName``, ``ConsumerGroup``, ``PartitionId``,
  ``IsCheckpointingAfterInvocation``);
- enqueued times are .NET ``DateTime`` values of kind Unspecified
  (``EnqueuedTime.DateTime``), which Json.NET writes without a zone.

What the worker makes of it, per event and from ``SystemPropertiesArray`` alone:
``sequence_number`` (int), ``offset`` (an **int**, although annotated ``str``: the
extension writes ``Offset`` as a number), ``partition_key`` (str or None),
``enqueued_time`` (a **naive** datetime holding UTC: the zone-less text parses as
local time) and ``get_body()`` (bytes). ``metadata`` is the batch's, the same
mapping on every event: ``events[0].metadata["PartitionContext"]["PartitionId"]``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

import azure.functions as func
import orjson

from standins import rpc
from standins.host import converted

EVENT_HUBS_NAMESPACE = "evhns-edge.servicebus.windows.net"
CONSUMER_GROUP = "$Default"
EVENT_GRID_NAMESPACE = "evgns-edge"
START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
HUB_PARTITIONS = ("0", "1")  # infra's default eventHubPartitionCount

# Routed MQTT messages (Azure docs, "Event schema for MQTT routed messages").
ROUTED_EVENT_TYPE = "MQTT.EventPublished"
# The routing enrichments of infra/app/eventgrid-routing.bicep: dynamic, then static.
DEVICE_ID_ENRICHMENT = "deviceid"  # ${client.authenticationName}
TOPIC_ENRICHMENT = "mqtttopic"  # ${mqtt.message.topicName}
# ${client.attributes.role}: every device's; the hubs' subscriptions take nothing else.
CLIENT_ROLE_ENRICHMENT = "clientrole"
DEVICE_ROLE = "edge-device"
STATIC_ENRICHMENTS = {"app": "edge-cloud-messaging"}

# The device topics (infra's topic spaces); the device id may hold "/".
_DEVICE_TOPIC = re.compile(r"devices/(.+)/(?:telemetry|inference|commands/[^/]+/response)")

# An event's offset is its byte position in the partition: the next one starts after
# its body and the AMQP envelope around it (an allowance; the real size varies).
_ENVELOPE_BYTES = 96


def hub_partition(device_id: str) -> str:
    """A partition per device, as Event Hubs gives one per partition key (Event Grid
    delivers with ``PartitionKey`` = the ``deviceid`` enrichment): a stable hash
    stands in for the service's own."""
    digest = hashlib.sha256(device_id.encode()).digest()
    return HUB_PARTITIONS[digest[0] % len(HUB_PARTITIONS)]


@dataclass(frozen=True, slots=True)
class Published:
    """One event in a partition's log: what the host reports for it on every delivery."""

    body: bytes
    sequence_number: int
    offset: int
    enqueued: datetime  # aware, UTC
    partition_key: str | None
    properties: Mapping[str, Any]


class Partition:
    """One partition of a hub: an append-only log that hands out consecutive sequence
    numbers, growing offsets and enqueued times that never go back (``spacing`` apart
    unless given), and delivers any range of it as one batch. Delivering a range again (with other batch boundaries,
    as the host does after a restart or a lost lease) yields the same events with the
    same sequence numbers, offsets and enqueued times."""

    def __init__(self, hub: str = "telemetry", partition_id: str = "0", *,
                 namespace: str = EVENT_HUBS_NAMESPACE, consumer_group: str = CONSUMER_GROUP,
                 first_sequence: int = 0, first_offset: int = 0, first_enqueued: datetime = START,
                 spacing: timedelta = timedelta(milliseconds=100)) -> None:
        if first_enqueued.tzinfo is None:
            raise ValueError("first_enqueued must be aware (Event Hubs stamps UTC)")
        if spacing < timedelta(0):
            raise ValueError("spacing must not be negative: enqueued times never go back in a partition")
        self.hub = hub
        self.partition_id = partition_id
        self.namespace = namespace
        self.consumer_group = consumer_group
        self.first_sequence = first_sequence
        self.log: list[Published] = []
        self._next_offset = first_offset
        self._first_enqueued = first_enqueued.astimezone(UTC)
        self._spacing = spacing

    @property
    def next_sequence(self) -> int:
        return self.first_sequence + len(self.log)

    def publish(self, bodies: Sequence[bytes], *, partition_keys: Sequence[str | None] | None = None,
                properties: Sequence[Mapping[str, Any]] | None = None,
                enqueued: Sequence[datetime] | None = None) -> range:
        """Append ``bodies`` (with their partition keys, application properties and
        enqueued times); returns the sequence numbers they were given. An event
        without an enqueued time of its own comes ``spacing`` after the previous one."""
        keys = _per_event(partition_keys, len(bodies), None, "partition_keys")
        props = _per_event(properties, len(bodies), {}, "properties")
        times = _per_event(enqueued, len(bodies), None, "enqueued")
        start = self.next_sequence
        for body, key, prop, at in zip(bodies, keys, props, times, strict=True):
            if not isinstance(body, bytes):
                raise TypeError("an event body is bytes")
            if key == "":
                raise ValueError("a partition key is None or a non-empty string")
            previous = self.log[-1].enqueued if self.log else None
            if at is None:
                at = self._first_enqueued if previous is None else previous + self._spacing
            elif at.tzinfo is None:
                raise ValueError("enqueued times must be aware (Event Hubs stamps UTC)")
            if previous is not None and at < previous:
                raise ValueError("enqueued times never go back in a partition")
            index = len(self.log)
            self.log.append(Published(body, self.first_sequence + index, self._next_offset, at.astimezone(UTC),
                                      key, dict(prop)))
            self._next_offset += len(body) + _ENVELOPE_BYTES
        return range(start, self.next_sequence)

    def deliver(self, sequence_numbers: range | None = None, *,
                data_type: Literal["binary", "string"] = "binary") -> Batch:
        """The events with ``sequence_numbers`` (default: the whole log) as one batch."""
        wanted = range(self.first_sequence, self.next_sequence) if sequence_numbers is None else sequence_numbers
        if len(wanted) == 0:
            raise ValueError("the host never delivers an empty batch")
        if wanted.step != 1 or wanted.start < self.first_sequence or wanted.stop > self.next_sequence:
            raise ValueError(f"sequence numbers {wanted.start}..{wanted.stop - 1} are not a run of the "
                             f"partition's {self.first_sequence}..{self.next_sequence - 1}")
        records = self.log[wanted.start - self.first_sequence:wanted.stop - self.first_sequence]
        return host_batch(records, hub=self.hub, partition_id=self.partition_id, namespace=self.namespace,
                            consumer_group=self.consumer_group, data_type=data_type)

    def batches(self, size: int, sequence_numbers: range | None = None) -> list[Batch]:
        """``sequence_numbers`` (default: the whole log) in consecutive batches of at most ``size``."""
        if size < 1:
            raise ValueError("size must be at least 1")
        wanted = range(self.first_sequence, self.next_sequence) if sequence_numbers is None else sequence_numbers
        return [self.deliver(wanted[i:i + size]) for i in range(0, len(wanted), size)]


def events(bodies: Sequence[bytes], *, hub: str = "telemetry", partition: str = "0", first_sequence: int = 0,
           first_offset: int = 0, first_enqueued: datetime = START, spacing: timedelta = timedelta(milliseconds=100),
           partition_keys: Sequence[str | None] | None = None, properties: Sequence[Mapping[str, Any]] | None = None,
           namespace: str = EVENT_HUBS_NAMESPACE, consumer_group: str = CONSUMER_GROUP,
           data_type: Literal["binary", "string"] = "binary") -> Batch:
    """One batch of ``bodies`` from a fresh partition, as the host sends it."""
    log = Partition(hub, partition, namespace=namespace, consumer_group=consumer_group, first_sequence=first_sequence,
                    first_offset=first_offset, first_enqueued=first_enqueued, spacing=spacing)
    log.publish(bodies, partition_keys=partition_keys, properties=properties)
    return log.deliver(data_type=data_type)


class Batch(Sequence[func.EventHubEvent]):
    """One delivery of a run of a partition: what the host sends the worker (``data``,
    the bodies, and ``metadata``, the trigger metadata, as the protocol's ``TypedData``)
    and, read as a sequence, the events the worker's conversion makes of it (decoded
    on first use by the runtime's own ``from_incoming_proto``)."""

    def __init__(self, data: Any, metadata: dict[str, Any]) -> None:
        self.data = data
        self.metadata = metadata
        self._events: list[func.EventHubEvent] | None = None

    def _decoded(self) -> list[func.EventHubEvent]:
        if self._events is None:
            decoded = converted("eventHubTrigger", self.data, self.metadata)
            assert isinstance(decoded, list)  # cardinality many: the metadata holds SystemPropertiesArray
            self._events = decoded
        return self._events

    @overload
    def __getitem__(self, index: int) -> func.EventHubEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[func.EventHubEvent]: ...

    def __getitem__(self, index: int | slice) -> func.EventHubEvent | list[func.EventHubEvent]:
        return self._decoded()[index]

    def __len__(self) -> int:
        bodies = self.data.collection_bytes.bytes or self.data.collection_string.string
        return len(bodies)


def host_batch(records: Sequence[Published], *, hub: str, partition_id: str,
               namespace: str = EVENT_HUBS_NAMESPACE, consumer_group: str = CONSUMER_GROUP,
               data_type: Literal["binary", "string"] = "binary") -> Batch:
    """``records`` as the host delivers them to a ``cardinality="many"`` trigger."""
    if data_type == "binary":
        data = rpc.TypedData(collection_bytes=rpc.CollectionBytes(bytes=[r.body for r in records]))
    else:
        data = rpc.TypedData(collection_string=rpc.CollectionString(string=[r.body.decode() for r in records]))
    return Batch(data, trigger_metadata(records, hub=hub, partition_id=partition_id, namespace=namespace,
                                        consumer_group=consumer_group))


def trigger_metadata(records: Sequence[Published], *, hub: str, partition_id: str,
                     namespace: str = EVENT_HUBS_NAMESPACE, consumer_group: str = CONSUMER_GROUP) -> dict[str, Any]:
    """The trigger metadata of a batch, each value the ``TypedData`` kind the host sends."""
    context = _json({"IsCheckpointingAfterInvocation": True, "FullyQualifiedNamespace": namespace,
                     "EventHubName": hub, "ConsumerGroup": consumer_group, "PartitionId": partition_id})
    offsets = [str(r.offset) for r in records]
    return {
        "TriggerPartitionContext": context,
        "PartitionContext": context,
        # string[] without its null and empty items: the host skips them.
        "PartitionKeyArray": rpc.TypedData(collection_string=rpc.CollectionString(
            string=[r.partition_key for r in records if r.partition_key])),
        "OffsetArray": rpc.TypedData(collection_string=rpc.CollectionString(string=offsets)),
        "OffsetStringArray": rpc.TypedData(collection_string=rpc.CollectionString(string=list(offsets))),
        "SequenceNumberArray": rpc.TypedData(collection_sint64=rpc.CollectionSInt64(
            sint64=[r.sequence_number for r in records])),
        "EnqueuedTimeUtcArray": _json([dotnet_datetime(r.enqueued) for r in records]),
        "PropertiesArray": _json([dict(r.properties) for r in records]),
        "SystemPropertiesArray": _json([_system_properties(r) for r in records]),
    }


def _system_properties(record: Published) -> dict[str, Any]:
    """The event's AMQP annotations plus the keys the extension adds; the converter
    reads ``SequenceNumber``, ``Offset``, ``PartitionKey`` and ``EnqueuedTimeUtc``."""
    annotations: dict[str, Any] = {
        "x-opt-sequence-number": record.sequence_number,
        "x-opt-offset": str(record.offset),
        "x-opt-enqueued-time": dotnet_datetime(record.enqueued) + "Z",
    }
    if record.partition_key is not None:
        annotations["x-opt-partition-key"] = record.partition_key
    return {**annotations, "SequenceNumber": record.sequence_number, "Offset": record.offset,
            "OffsetString": str(record.offset), "PartitionKey": record.partition_key,
            "EnqueuedTimeUtc": dotnet_datetime(record.enqueued)}


def dotnet_datetime(moment: datetime) -> str:
    """A UTC time as Json.NET writes a ``DateTime`` of kind Unspecified: no zone, up to
    seven fraction digits with trailing zeros cut (no fraction when it is zero)."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "")


def _json(value: Any) -> Any:
    return rpc.TypedData(json=orjson.dumps(value).decode())


def _per_event(values: Sequence[Any] | None, count: int, default: Any, name: str) -> list[Any]:
    if values is None:
        return [default] * count
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} items for {count} bodies")
    return list(values)


# --------------------------------------------------------------------------- routed MQTT messages


def routed_event(payload: Any, *, topic: str, at: datetime, client: str | None = None,
                 payload_format: Literal["json", "binary"] = "json", content_type: str | None = None,
                 namespace: str = EVENT_GRID_NAMESPACE, event_id: str | None = None) -> dict[str, Any]:
    """The CloudEvent (structured JSON) the Event Grid MQTT broker routes for one PUBLISH,
    with this infrastructure's enrichments.

    ``payload`` is the PUBLISH payload: bytes, or a JSON value to encode. How the broker
    carries it (Azure docs, "Event schema for MQTT routed messages"): ``json`` (MQTT v5
    with payload format indicator 1 or content type ``application/json; charset=utf-8``)
    puts it in ``data``, the JSON value itself or, when the payload is not JSON, its text
    as a JSON string; ``binary`` (MQTT v3.1.1, or v5 with indicator 0) puts it base64
    encoded in ``data_base64``. ``source`` is the namespace name, ``subject`` the topic,
    ``time`` the broker's receipt, ``id`` a service-stamped id (derived from the rest,
    so redelivering the same message gives the same event). ``client`` is the publishing
    client's authentication name (the ``deviceid`` enrichment); by default the device of a
    device topic (``devices/{id}/telemetry``, ``.../inference``,
    ``.../commands/{c}/response``). ``content_type`` becomes ``datacontenttype`` when
    given (the docs' schema shows none; ``../shared/samples`` carry one)."""
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    if client is None:
        device = _DEVICE_TOPIC.fullmatch(topic)
        if device is None:
            raise ValueError("give client: the topic is none of the device topics that name it")
        client = device.group(1)
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}|{topic}|{at.isoformat()}|{raw.hex()}")),
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",  # the service's 7 digits
        "type": ROUTED_EVENT_TYPE,
        "source": namespace,
        "subject": topic,
    }
    if content_type is not None:
        document["datacontenttype"] = content_type
    if payload_format == "binary":
        document["data_base64"] = base64.b64encode(raw).decode()
    else:
        try:
            document["data"] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document["data"] = raw.decode()  # indicator 1 promises UTF-8
    document[DEVICE_ID_ENRICHMENT] = client
    document[TOPIC_ENRICHMENT] = topic
    document[CLIENT_ROLE_ENRICHMENT] = DEVICE_ROLE
    document.update(STATIC_ENRICHMENTS)
    return document


def routed_body(payload: Any, **kwargs: Any) -> bytes:
    """:func:`routed_event` as the Event Hub event body Event Grid delivers (UTF-8 JSON)."""
    return orjson.dumps(routed_event(payload, **kwargs))
