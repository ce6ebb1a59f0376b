"""What Azure does between the broker and the app, done locally for the simulator.

An MQTT client subscribes to the devices' telemetry, inference and command response
topics, as the namespace's routing does. Every flush (about every 0.5 s) it wraps
each message taken off the broker as the routed CloudEvent Event Grid delivers (with
the ``deviceid`` enrichment), appends them per stream to one of two partitions of
the stream's hub (by a stable hash of the device id, the partition key being the
device id), and hands each partition's new events to the stream's function in
batches of at most host.json's ``maxEventBatchSize``, built by the library's
converter, in process. The simulated clients' connects and disconnects become
MQTT client life cycle events with a sequence number per device (a session's
connect and disconnect share one), delivered to
``client_lifecycle`` at the next flush; ``reorder`` duplicates and shuffles them as
Event Grid may. ``redeliver`` hands a partition an overlapping range again after a
batch, in other batch boundaries, as the host does after a lost lease.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from standins import event_factory as ev
from standins.edge import Inbox, TlsClient
from standins.eventhub_factory import Partition, hub_partition, routed_body
from standins.invoke import deliver, user_function
from tools.simulate.invariants import Place

TOPICS = ("devices/+/telemetry", "devices/+/inference", "devices/+/commands/+/response")
FLUSH_SECONDS = 0.5

Key = tuple[str, bytes]  # topic and payload: one message, as published


def stream_of(topic: str) -> str:
    return "command-responses" if topic.endswith("/response") else topic.rsplit("/", 1)[1]


def device_of(topic: str) -> str:
    return topic.split("/")[1]


class StandIn:
    """The routing and the life cycle events between the broker and the app."""

    def __init__(self, broker_url: str, *, rng: random.Random, redeliver: bool = False,
                 reorder: bool = False, tls: TlsClient | None = None, first_sequence: int = 0) -> None:
        self.rng = rng
        self.first_sequence = first_sequence  # of each partition: past what a storage used before has seen
        self.redeliver = redeliver
        self.reorder = reorder
        self.partitions: dict[tuple[str, str], Partition] = {}
        self.expected: Counter[Place] = Counter()  # where each stream message must end, once
        self.routed: Counter[str] = Counter()  # messages taken off the broker, by stream
        self.stored_at: dict[Key, float] = {}  # when the batch holding a message returned (perf_counter)
        self.redeliveries = 0  # overlapping ranges handed again
        self.lifecycle_events = 0
        self.lifecycle_duplicates = 0
        self.lifecycle_shuffled = 0
        self._sequence: dict[str, int] = {}
        self._created: dict[str, datetime] = {}
        self._lifecycle: list[dict[str, Any]] = []
        self._flushing = asyncio.Lock()
        self._inbox = Inbox(broker_url, list(TOPICS), client_id=f"stand-in-{id(self)}", tls=tls)

    def close(self) -> None:
        self._inbox.close()

    @property
    def received(self) -> int:
        """Messages taken off the broker so far, routed or waiting for the next flush."""
        return sum(self.routed.values()) + len(self._inbox)

    # ----------------------------------------------------------------- life cycle

    def created(self, device_id: str, attributes: dict[str, Any], state: str = "Enabled") -> None:
        """The client created, or updated (``state`` ``Disabled``: the operator disabled it)."""
        now = datetime.now(UTC)
        created_on = self._created.setdefault(device_id, now)
        self._lifecycle.append(ev.created_or_updated(device_id, now, created_on=created_on, state=state,
                                                     attributes=attributes))

    def session_started(self, device_id: str) -> None:
        self._sequence[device_id] = self._sequence.get(device_id, 0) + 1
        self._lifecycle.append(ev.connected(device_id, self._sequence[device_id], datetime.now(UTC),
                                            schema="cloudevents"))

    def session_ended(self, device_id: str, reason: str = "ClientInitiatedDisconnect") -> None:
        self._lifecycle.append(ev.disconnected(device_id, self._sequence[device_id], datetime.now(UTC),
                                               reason=reason, schema="cloudevents"))

    def _lifecycle_deliveries(self) -> list[dict[str, Any]]:
        taken, self._lifecycle = self._lifecycle, []
        if not self.reorder or not taken:
            return taken
        duplicates = [event for event in taken if self.rng.random() < 0.3]
        delivered = taken + duplicates
        self.rng.shuffle(delivered)
        self.lifecycle_duplicates += len(duplicates)
        self.lifecycle_shuffled += sum(1 for a, b in zip(delivered, taken + duplicates, strict=True) if a is not b)
        return delivered

    # ----------------------------------------------------------------- routing

    async def flush(self) -> None:
        """Deliver the life cycle events and route the messages taken so far."""
        async with self._flushing:
            handler = user_function("client_lifecycle")
            for document in self._lifecycle_deliveries():
                await handler(document)
                self.lifecycle_events += 1
            taken = self._inbox.take()
            groups: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
            for topic, payload in taken:
                stream = stream_of(topic)
                groups.setdefault((stream, hub_partition(device_of(topic))), []).append((topic, payload))
            await asyncio.gather(*(self._route(key, items) for key, items in sorted(groups.items())))

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every :data:`FLUSH_SECONDS` until ``stop`` is set."""
        while not stop.is_set():
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def _route(self, key: tuple[str, str], items: list[tuple[str, bytes]]) -> None:
        stream, partition_id = key
        now = datetime.now(UTC)
        log = self.partitions.setdefault(key, Partition(stream, partition_id, first_enqueued=now,
                                                          first_sequence=self.first_sequence))
        at = max(now, log.log[-1].enqueued) if log.log else now
        bodies = [routed_body(payload, topic=topic, at=at) for topic, payload in items]
        sequence = log.publish(bodies, partition_keys=[device_of(topic) for topic, _ in items],
                               enqueued=[at] * len(items))
        if stream != "command-responses":
            self.expected.update((stream, partition_id, number, None) for number in sequence)
        self.routed[stream] += len(items)
        await deliver(log, sequence)
        stored = time.perf_counter()
        for item in items:
            self.stored_at[item] = stored
        if self.redeliver and self.rng.random() < 0.5:
            await self.replay(log, range(max(log.first_sequence, sequence.start - len(sequence)), sequence.stop))

    async def replay(self, log: Partition, wanted: range) -> None:
        """``wanted`` of ``log`` handed to its function again, in batches of other sizes."""
        size = max(1, len(wanted) // self.rng.randint(2, 3))
        for start in range(wanted.start, wanted.stop, size):
            await deliver(log, range(start, min(start + size, wanted.stop)))
        self.redeliveries += 1
