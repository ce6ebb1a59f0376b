"""The AMQP stand-in of Event Hubs refuses, as the service or Event Grid's contract would,
what the real azure-eventhub producer sends wrongly; and takes what it sends rightly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, ConnectError, EventDataSendError

from tools.eventhub_factory import routed_body
from tools.eventhubs_amqp import CONTENT_TYPE, EventHubsStandIn, connection_string


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
