"""A double of the Event Hubs producer client, as its documentation describes the calls the
app makes, shared by the alert forwarding and stream tests."""

from __future__ import annotations

from typing import Any

from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.exceptions import ConnectionLostError


class RecordingBatch(EventDataBatch):
    """The SDK's batch (its size accounting, its ValueError when full) that remembers
    what was added to it."""

    def __init__(self, max_size_in_bytes: int, partition_key: str | None) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes, partition_key=partition_key)
        self.key = partition_key
        self.events: list[EventData] = []

    def add(self, event_data: Any) -> None:
        assert isinstance(event_data, EventData)
        super().add(event_data)
        self.events.append(event_data)


class ProducerDouble:
    """``EventHubProducerClient`` as its documentation describes the calls we make:
    ``create_batch`` returns an ``EventDataBatch``; ``send_batch`` takes that batch and
    no partition of its own (the batch has it; the SDK raises TypeError otherwise);
    nothing after ``close``. ``fail_on`` makes the n-th send fail as a lost connection."""

    def __init__(self, max_size_in_bytes: int = 1024 * 1024, fail_on: int | None = None) -> None:
        self.max_size = max_size_in_bytes
        self.fail_on = fail_on
        self.created: list[RecordingBatch] = []
        self.sent: list[RecordingBatch] = []
        self.sends = 0
        self.closed = False

    async def create_batch(self, *, partition_id: str | None = None, partition_key: str | None = None,
                           max_size_in_bytes: int | None = None) -> RecordingBatch:
        assert not self.closed
        assert partition_id is None and max_size_in_bytes is None, "the service picks the partition and size"
        batch = RecordingBatch(self.max_size, partition_key)
        self.created.append(batch)
        return batch

    async def send_batch(self, event_data_batch: Any, *, timeout: float | None = None,  # noqa: ASYNC109 - the SDK's
                         partition_id: str | None = None, partition_key: str | None = None) -> None:
        assert not self.closed
        assert event_data_batch in self.created and event_data_batch not in self.sent
        if partition_id is not None or partition_key is not None:
            raise TypeError("an EventDataBatch has its own partition")
        assert len(event_data_batch) > 0, "an empty batch is a wasted call"
        assert event_data_batch.size_in_bytes <= self.max_size
        self.sends += 1
        if self.sends == self.fail_on:
            raise ConnectionLostError("injected: connection lost")
        self.sent.append(event_data_batch)

    async def close(self, *, flush: bool = True, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.closed = True

    def events(self) -> list[tuple[str | None, EventData]]:
        return [(batch.key, event) for batch in self.sent for event in batch.events]
