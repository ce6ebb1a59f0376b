"""The range read from Event Hubs with the ``azure-eventhub`` consumer: checked against
the partition's properties, then its events in sequence order, in batches, each as the
host reports it; a gap, a read error or a stall ends it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from standins.eventhub_factory import Published
from tools.replay.model import ReplayError, Request

if TYPE_CHECKING:
    from azure.eventhub import EventData

# Why 0.5 s: the consumer hands over what it has buffered every 50 ms; a batch waits up
# to ten of those for more events before it goes in part full (fewer, fuller blobs).
LINGER_SECONDS = 0.5


def published(event: EventData) -> Published:
    """An event as the consumer received it, as the host reports it: the pure-Python
    AMQP decoder hands strings and binaries alike as bytes, so a key or property value
    that is UTF-8 is taken as the string it was sent as."""
    sequence, offset, enqueued = event.sequence_number, event.offset, event.enqueued_time
    if sequence is None or offset is None or enqueued is None:
        raise ReplayError("failed", f"an event without its sequence number, offset or enqueued time: {event!r}")
    if not offset.isdigit():
        raise ReplayError("failed", f"event {sequence}: offset {offset!r} is not a number (the host and the archive "
                                    "take numeric offsets)")
    body: Any = event.body
    raw = body if isinstance(body, bytes) else b"".join(body) if not isinstance(body, str) else body.encode()
    key = event.partition_key
    return Published(raw, sequence, int(offset), enqueued, _text(key) if key is not None else None,
                     {str(_text(k)): _plain(v) for k, v in (event.properties or {}).items()})


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex()
    return value


def _plain(value: Any) -> Any:
    """A property value as JSON can carry it (the host writes them as JSON)."""
    value = _text(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def consumer(request: Request) -> tuple[Any, Any]:
    """The ``EventHubConsumerClient`` of the request, and the credential it owns (or None)."""
    from azure.eventhub.aio import EventHubConsumerClient

    if request.connection_string:
        return EventHubConsumerClient.from_connection_string(
            request.connection_string, request.consumer_group, eventhub_name=request.hub), None
    from azure.identity.aio import DefaultAzureCredential

    credential = DefaultAzureCredential()
    return EventHubConsumerClient(str(request.namespace), request.hub, request.consumer_group, credential), credential


def namespace_of(request: Request) -> str:
    """The namespace's host name, which the host reports in the batch's partition context."""
    if request.connection_string:
        from azure.eventhub import parse_connection_string

        return str(parse_connection_string(request.connection_string).fully_qualified_namespace)
    return str(request.namespace)


def said(error: Exception, request: Request) -> str:
    """The SDK's error in one line, with what its status most likely means (the SDK
    drops the service's description of a failed management request)."""
    text = str(error).splitlines()[0]
    if "Status code: 404" in text:
        return f"{text} (the namespace has no hub {request.hub})"
    if "Status code: 400" in text:
        return f"{text} (the hub has no partition {request.partition})"
    if "Status code: 401" in text or "Status code: 403" in text:
        return f"{text} (reading needs Azure Event Hubs Data Receiver, or a key with Listen)"
    return text


def check_range(request: Request, properties: dict[str, Any]) -> None:
    """Refuse a range the partition does not hold whole (before reading anything)."""
    begin, end = int(properties["beginning_sequence_number"]), int(properties["last_enqueued_sequence_number"])
    where = f"{request.hub} partition {request.partition}"
    if properties.get("is_empty") or request.last > end:
        held = "holds no event" if properties.get("is_empty") else f"ends at sequence number {end}"
        hint = f": replay up to --to {end}" if not properties.get("is_empty") and request.first <= end else ""
        raise ReplayError("refused", f"{request.first}-{request.last} is past the end of {where}, which {held}{hint}")
    if request.first < begin:
        raise ReplayError("refused", f"{request.first}-{min(request.last, begin - 1)} expired from retention: "
                                     f"{where} begins at sequence number {begin} (replay from --from {begin})")


async def batches(client: Any, request: Request, stop: asyncio.Event) -> AsyncGenerator[list[Published]]:
    """The range's events in sequence order, in batches of at most
    ``request.batch_size``; a gap, a read error or ``request.wait`` seconds without the
    next event end it with :class:`ReplayError`. The client is closed at the end."""
    queue: asyncio.Queue[list[EventData] | Exception] = asyncio.Queue(maxsize=4)

    async def on_batch(_: Any, events: list[EventData]) -> None:
        await queue.put(events)

    async def on_error(_: Any, error: Exception) -> None:
        await queue.put(error)

    receiving = asyncio.ensure_future(client.receive_batch(
        on_batch, on_error=on_error, partition_id=request.partition, starting_position=request.first,
        starting_position_inclusive=True, max_batch_size=request.batch_size, prefetch=2 * request.batch_size))
    expected, pending = request.first, list[Published]()
    try:
        while expected <= request.last and not stop.is_set():
            try:
                item = await asyncio.wait_for(queue.get(), LINGER_SECONDS if pending else request.wait)
            except TimeoutError:
                if not pending:
                    raise ReplayError("stalled", f"no event {expected} within {request.wait:g} s (--wait)") from None
                yield pending
                pending = []
                continue
            if isinstance(item, Exception):
                raise ReplayError("failed", f"reading {request.hub} partition {request.partition} failed: "
                                            f"{said(item, request)}")
            for event in item:
                number = event.sequence_number
                if number is None or number < expected:
                    continue  # already taken (the consumer may read again after a reconnect)
                if number > request.last:
                    break
                if number != expected:
                    raise ReplayError("failed", f"event {expected} is missing: the partition went on at {number} "
                                                "(expired from retention while reading?)")
                pending.append(published(event))
                expected += 1
                if len(pending) == request.batch_size:
                    yield pending
                    pending = []
        if pending:
            yield pending
    finally:
        await client.close()
        receiving.cancel()  # closed: what is left is its load balancer's sleep (30 s)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiving
