"""The AMQP stand-in of Event Hubs refuses, as the service or Event Grid's contract would,
what the real azure-eventhub producer sends or its consumer asks wrongly; takes what the
producer sends rightly and gives the consumer the events as they were sent."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, ConnectError, EventDataSendError, EventHubError

from standins.eventhub_factory import hub_partition, routed_body
from standins.eventhubs_amqp.batches import CONTENT_TYPE
from standins.eventhubs_amqp.claims import connection_string
from standins.eventhubs_amqp.service import EventHubsStandIn


def event(device: str = "cam-1", *, topic: str | None = None, content_type: str | None = CONTENT_TYPE,
          body: bytes | None = None) -> EventData:
    data = EventData(body if body is not None else routed_body(
        {"timestamp": "2026-11-20T08:00:00Z", "sequence": 1, "metrics": {"cpuTemp": 50}},
        topic=topic or f"devices/{device}/telemetry", at=datetime.now(UTC)))
    if content_type is not None:
        data.content_type = content_type
    return data


async def send(hubs: EventHubsStandIn, events: list[EventData], *, key: str, hub: str = "telemetry",
               conn: str | None = None) -> None:
    async with EventHubProducerClient.from_connection_string(conn or hubs.connection_string, eventhub_name=hub,
                                                             retry_total=0) as producer:
        batch = await producer.create_batch(partition_key=key)
        for item in events:
            batch.add(item)
        await asyncio.wait_for(producer.send_batch(batch), 30)


def test_a_routed_batch_is_taken_and_what_breaks_the_contract_is_refused_with_why(run: Any) -> None:
    async def scenario() -> EventHubsStandIn:
        hubs = EventHubsStandIn()
        async with hubs.serving():
            await send(hubs, [event(), event()], key="cam-1")
            refusals = [([event(content_type=None)], "cam-1", "content type None"),
                        ([event("cam-2")], "cam-1", "partition key 'cam-1' is not the deviceid 'cam-2'"),
                        ([event(topic="devices/cam-1/inference")], "cam-1", "that routing sends to telemetry"),
                        ([event(body=b'{"timestamp": "x", "metrics": {}}')], "cam-1", "specversion is None")]
            for events, key, why in refusals:
                with pytest.raises(EventDataSendError, match="PreconditionFailed"):
                    await send(hubs, events, key=key)
                assert why in hubs.rejected[-1]
        return hubs

    hubs = run(scenario())
    assert hubs.accepted() == 2 and len(hubs.logs) == 1
    (log,) = hubs.logs.values()
    assert [e.partition_key for e in log.log] == ["cam-1", "cam-1"] and [e.sequence_number for e in log.log] == [0, 1]


def test_a_wrong_key_and_a_hub_the_namespace_does_not_have_are_refused(run: Any) -> None:
    async def scenario() -> EventHubsStandIn:
        hubs = EventHubsStandIn()
        async with hubs.serving():
            with pytest.raises(AuthenticationError, match="401"):
                await send(hubs, [event()], key="cam-1", conn=connection_string(hubs.port, key="d3Jvbmc="))
            with pytest.raises(ConnectError, match="404"):
                await send(hubs, [event()], key="cam-1", hub="nope")
        return hubs

    hubs = run(scenario())
    assert hubs.accepted() == 0
    assert "InvalidSignature: the token's signature does not match the key" in hubs.rejected
    assert "The messaging entity 'nope' could not be found." in hubs.rejected


def test_a_batch_larger_than_what_proton_takes_at_once_is_taken_whole(run: Any) -> None:
    # Proton's transport takes its input a few KiB at a time; a batch of a busy device
    # (about 60 KiB here) arrives in socket reads much larger than that.
    async def scenario() -> EventHubsStandIn:
        hubs = EventHubsStandIn()
        async with hubs.serving():
            await send(hubs, [event() for _ in range(150)], key="cam-1")
        return hubs

    hubs = run(scenario())
    assert hubs.accepted() == 150 and not hubs.rejected
    (log,) = hubs.logs.values()
    assert len({e.body for e in log.log}) == 150


# --------------------------------------------------------------------------- consumers


async def read(hubs: EventHubsStandIn, partition: str, start: int | str, *, inclusive: bool = True,
               count: int = 0, seconds: float = 5, group: str = "$Default", hub: str = "telemetry",
               ) -> tuple[list[EventData], list[Exception]]:
    """What a consumer starting at ``start`` receives until it has ``count`` events, an
    error, or ``seconds`` passed."""
    events: list[EventData] = []
    errors: list[Exception] = []
    done = asyncio.Event()
    client = EventHubConsumerClient.from_connection_string(hubs.connection_string, group, eventhub_name=hub,
                                                           retry_total=0)

    async def on_batch(_: Any, batch: list[EventData]) -> None:
        events.extend(batch)
        if count and len(events) >= count:
            done.set()

    async def on_error(_: Any, error: Exception) -> None:
        errors.append(error)
        done.set()

    receiving = asyncio.ensure_future(client.receive_batch(
        on_batch, partition_id=partition, starting_position=start, starting_position_inclusive=inclusive,
        on_error=on_error))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), seconds)
    await client.close()
    receiving.cancel()  # closed: what is left is the load balancer's sleep (30 s)
    with contextlib.suppress(asyncio.CancelledError):
        await receiving
    return events, errors


def test_a_consumer_reads_from_a_sequence_number_the_events_as_they_were_sent(run: Any) -> None:
    async def scenario() -> tuple[EventHubsStandIn, dict[str, Any], list[EventData], list[EventData]]:
        hubs = EventHubsStandIn(first_sequence=1000)
        async with hubs.serving():
            sent = [event() for _ in range(6)]
            sent[2].properties = {"replayed-from": "a/blob.json"}
            await send(hubs, sent, key="cam-1")
            partition = hub_partition("cam-1")
            async with EventHubConsumerClient.from_connection_string(
                    hubs.connection_string, "$Default", eventhub_name="telemetry") as client:
                properties = await client.get_partition_properties(partition)
            inclusive, _ = await read(hubs, partition, 1002, count=4)
            exclusive, _ = await read(hubs, partition, 1002, inclusive=False, count=3)
        return hubs, properties, inclusive, exclusive

    hubs, properties, inclusive, exclusive = run(scenario())
    (log,) = hubs.logs.values()
    assert (properties["beginning_sequence_number"], properties["last_enqueued_sequence_number"]) == (1000, 1005)
    assert properties["last_enqueued_offset"] == str(log.log[-1].offset) and not properties["is_empty"]
    assert [e.sequence_number for e in inclusive] == [1002, 1003, 1004, 1005]
    assert [e.sequence_number for e in exclusive] == [1003, 1004, 1005]
    for received in inclusive:
        original = log.log[received.sequence_number - 1000]
        assert b"".join(received.body) == original.body
        assert received.offset == str(original.offset) and received.enqueued_time == original.enqueued
        assert received.partition_key == b"cam-1" and received.content_type == CONTENT_TYPE
    assert inclusive[0].properties == {b"replayed-from": b"a/blob.json"}, "application properties kept"
    assert all(e.enqueued.microsecond % 1000 == 0 for e in log.log), "enqueued in whole milliseconds"
    assert hubs.receivers == ["amqp.annotation.x-opt-sequence-number >= '1002'",
                              "amqp.annotation.x-opt-sequence-number > '1002'"]


def test_a_waiting_consumer_gets_events_enqueued_after_it_attached(run: Any) -> None:
    async def scenario() -> list[EventData]:
        hubs = EventHubsStandIn()
        async with hubs.serving():
            reading = asyncio.ensure_future(read(hubs, hub_partition("cam-1"), 0, count=3, seconds=10))
            await asyncio.sleep(1)  # attached, at the end of an empty partition
            await send(hubs, [event(), event(), event()], key="cam-1")
            events, _ = await reading
        return events

    assert [e.sequence_number for e in run(scenario())] == [0, 1, 2]


def test_what_a_consumer_asks_wrongly_is_refused_with_the_services_words(run: Any) -> None:
    async def scenario() -> tuple[EventHubsStandIn, list[list[Exception]]]:
        hubs = EventHubsStandIn()
        async with hubs.serving():
            await send(hubs, [event(), event()], key="cam-1")
            partition = hub_partition("cam-1")
            attempts = [read(hubs, partition, 5), read(hubs, partition, "x"), read(hubs, partition, 0, group="nope")]
            errors = [(await attempt)[1] for attempt in attempts]
            async with EventHubConsumerClient.from_connection_string(
                    hubs.connection_string, "$Default", eventhub_name="telemetry", retry_total=0) as client:
                for hub, partition_id in (("telemetry", "7"), ("nope", "0")):
                    client.eventhub_name = hub
                    try:
                        await client.get_partition_properties(partition_id)
                    except EventHubError as error:
                        errors.append([error])
            return hubs, errors

    hubs, errors = run(scenario())
    assert all(len(e) >= 1 for e in errors), errors
    past_end, not_a_number, no_group, bad_partition, no_hub = (str(e[0]) for e in errors)
    assert "The supplied sequence number '5' is invalid. The last sequence number in the system is '1'" in past_end
    assert "com.microsoft:argument-out-of-range" in past_end
    assert "com.microsoft:argument-error" in not_a_number and "'x' is not a number" in not_a_number
    assert "400" in bad_partition and "404" in no_hub  # the SDK drops the status description
    assert any(r.startswith("The specified partition is invalid") for r in hubs.rejected)
    assert "amqp:not-found" in no_group
    assert hubs.sent == 0


def test_a_sixth_receiver_of_one_partition_and_group_is_refused(run: Any) -> None:
    async def scenario() -> list[list[Exception]]:
        hubs = EventHubsStandIn()
        async with hubs.serving():
            results = await asyncio.gather(*(read(hubs, "0", 0, seconds=4) for _ in range(6)))
        return [errors for _, errors in results]

    refused = [errors for errors in run(scenario()) if errors]
    assert len(refused) == 1 and "maximum number of allowed receivers" in str(refused[0][0])


def test_more_events_than_one_write_of_the_connection_arrive_whole(run: Any) -> None:
    # 300 events are about 130 KiB: proton hands its output 64 KiB at a time.
    async def scenario() -> list[EventData]:
        hubs = EventHubsStandIn()
        async with hubs.serving():
            await send(hubs, [event() for _ in range(150)], key="cam-1")
            await send(hubs, [event() for _ in range(150)], key="cam-1")
            events, _ = await read(hubs, hub_partition("cam-1"), 0, count=300)
        return events

    assert [e.sequence_number for e in run(scenario())] == list(range(300))
