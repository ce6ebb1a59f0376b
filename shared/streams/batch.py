"""An Event Hub batch as the ingest functions see it: where each event came from,
and what decoding made of it.

The host hands a function ``list[func.EventHubEvent]`` of one partition. Each event
keeps its origin (hub, partition, sequence number, offset, enqueued time), which
goes into every archive line and dead letter, so an operator can find the event
in Event Hubs again, and which orders the partition's events for the archive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.platform import metrics
from shared.platform.deadletter import write_dead_letter
from shared.platform.errors import InvalidInput
from shared.platform.storage import DataStore, data_store
from shared.platform.timestamps import format_timestamp
from shared.streams.decode import Accepted, Rejected, decode
from shared.streams.envelopes import Stream
from shared.streams.limits import StreamLimits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one event sits in Event Hubs."""

    hub: str
    partition: str
    sequence_number: int
    offset: str | None
    enqueued_time: datetime

    def to_json(self) -> dict[str, Any]:
        return {"hub": self.hub, "partitionId": self.partition, "sequenceNumber": self.sequence_number,
                "offset": self.offset, "enqueuedTime": format_timestamp(self.enqueued_time)}


@dataclass(slots=True)
class Event:
    """One event of the batch and what it holds: accepted messages and rejections."""

    origin: Origin
    body: bytes
    results: list[Accepted | Rejected]


def last_attempt(retry_count: int, max_retry_count: int) -> bool:
    """Whether a failing invocation is its retry policy's last attempt (then the
    batch goes to dead letters rather than fail); without a policy it is not."""
    return max_retry_count > 0 and retry_count >= max_retry_count


async def dead_letter(store: DataStore, stream: str, origin: Origin, rejected: Rejected, now: datetime) -> None:
    """The dead letter of a rejected event body, or of one element of an array body."""
    where = origin.to_json() | ({"position": rejected.position} if rejected.position is not None else {})
    await write_dead_letter(store, stream=stream, reason=rejected.reason, errors=rejected.errors,
                            body=rejected.body, origin={"eventHub": where}, day=origin.enqueued_time,
                            received_at=now)
    reason = metrics.reason_class(rejected.reason, rejected.errors)
    metrics.record(metrics.DEAD_LETTERED, 1, stream=stream, partition=origin.partition, reason=reason)


def origin_of(event: Any, *, hub: str, partition: str, now: datetime) -> Origin:
    """Where ``event`` (a ``func.EventHubEvent``) sits. The host hands enqueued times
    as naive UTC and offsets as numbers."""
    enqueued = event.enqueued_time or now
    enqueued = enqueued.replace(tzinfo=UTC) if enqueued.tzinfo is None else enqueued.astimezone(UTC)
    offset = str(event.offset) if event.offset is not None else None
    return Origin(hub, partition, int(event.sequence_number or 0), offset, enqueued)


def partition_context(events: Sequence[Any]) -> dict[str, Any]:
    """The batch's ``PartitionContext`` as the host gives it (``PartitionId``,
    ``EventHubName``, ...), the same on every event; empty when there is none."""
    for event in events[:1]:
        context = (getattr(event, "metadata", None) or {}).get("PartitionContext")
        return context if isinstance(context, dict) else {}
    return {}


def read_batch(stream: Stream, events: Sequence[Any], *, hub: str, limits: StreamLimits,
               now: datetime) -> list[Event]:
    """Decode every event of one partition's batch, in sequence order. ``hub`` is
    the stream's hub setting, used when the host's metadata does not name it.

    A message's timestamp may lie at most ``limits.max_future_skew`` ahead of its
    event's enqueued time (not of the time we read it), so a redelivery decides
    exactly as the first delivery did."""
    context = partition_context(events)
    partition = str(context.get("PartitionId", "0"))
    hub = str(context.get("EventHubName") or hub)
    batch = []
    for event in events:
        sequence = event.sequence_number
        if sequence is None:
            raise InvalidInput("an Event Hub event without a sequence number cannot be archived exactly once")
        origin = origin_of(event, hub=hub, partition=partition, now=now)
        body = event.get_body()
        try:
            results = decode(stream, body, limits, now=origin.enqueued_time)
        except Exception as exc:  # a bug of ours must not hold up the partition: this event waits in dead letters
            log.exception("decoding %s event %s/%s/%d failed", stream, hub, partition, origin.sequence_number)
            results = [Rejected(f"internal: decoding failed ({type(exc).__name__})", [], body)]
        batch.append(Event(origin, body, results))
    batch.sort(key=lambda e: e.origin.sequence_number)
    return batch


async def give_up(stream: str, events: Sequence[Any], exc: BaseException, *, hub: str | None, now: datetime,
                  after: int = -1) -> int:
    """The last retry of a batch failed with ``exc``: each of its events past sequence
    number ``after`` (what the archive already holds) to dead letters, each on its own,
    with the reason. Never raises, so the partition moves on: a settings or storage
    failure here too leaves the events in Event Hubs, and the log names their range
    for a replay, once every write has ended (so it says what really happened).
    Returns how many events were dead-lettered."""
    context = partition_context(events)
    hub = str(context.get("EventHubName") or hub or "unknown")
    partition = str(context.get("PartitionId", "0"))
    pending = [e for e in events if (e.sequence_number if e.sequence_number is not None else -1) > after]
    reason = f"internal: not processed after the last retry ({type(exc).__name__})"
    with metrics.batch():
        try:
            store = data_store()
            results = await asyncio.gather(*(
                dead_letter(store, stream, origin_of(e, hub=hub, partition=partition, now=now),
                            Rejected(reason, [], e.get_body()), now) for e in pending), return_exceptions=True)
            lost = [e for e, result in zip(pending, results, strict=True) if isinstance(result, BaseException)]
        except Exception:  # noqa: BLE001 - no store at all (settings): nothing could be written
            lost = pending
        metrics.record(metrics.LAST_RETRY, len(pending) - len(lost), stream=stream)
    first, last = _sequence_span(events)
    log.error("giving up on %s events %s/%s %s-%s after the last retry (%s: %s); %d of %d dead-lettered", stream,
              hub, partition, first, last, type(exc).__name__, exc, len(pending) - len(lost), len(pending))
    if lost:
        lost_first, lost_last = _sequence_span(lost)
        log.error("LOST unless replayed: %d %s events of %s partition %s, sequence numbers %s-%s, could not be "
                  "dead-lettered either; replay them from Event Hubs", len(lost), stream, hub, partition,
                  lost_first, lost_last)
    return len(pending) - len(lost)


def _sequence_span(events: Sequence[Any]) -> tuple[int | None, int | None]:
    numbers = [e.sequence_number for e in events if e.sequence_number is not None]
    return (min(numbers), max(numbers)) if numbers else (None, None)
