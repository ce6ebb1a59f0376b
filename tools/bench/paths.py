"""The simulator's paths (local mode, --via eventhubs) against the function alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from standins.eventhub_factory import Partition

from tools.bench.streams import BATCH, STREAM_DEVICES, ingest_batches, telemetry_reading

PATH_MESSAGES = 3000  # a round through each path, and as many straight to the function
PATH_ROUNDS = 3
PATH_DEVICES = STREAM_DEVICES
PATH_WARMUP = 100  # through the path before the clock: devices connected, partitions known
PATH_WINDOW = 500  # published, not yet taken off the broker: under Mosquitto's queue of 1 000 per client
PATH_SPACING = timedelta(milliseconds=1)  # between readings' timestamps, so that each batch is newer state
PATH_TIMEOUT = 120.0  # seconds a path may take to store a round before the bench gives up

Message = tuple[str, bytes]  # topic and payload, as a device publishes it


def path_messages(prefix: str, count: int) -> list[Message]:
    """``count`` readings of devices ``{prefix}-NNN`` (message ``n`` from device ``n %
    PATH_DEVICES``), the last stamped now."""
    import orjson

    now = datetime.now(UTC)
    return [(f"devices/{prefix}-{n % PATH_DEVICES:03d}/telemetry",
             orjson.dumps(telemetry_reading(n, now - (count - n) * PATH_SPACING))) for n in range(count)]


def device_of(message: Message) -> str:
    return message[0].split("/")[1]


def direct_partition(messages: list[Message]) -> Partition:
    """``messages`` routed as the broker would, in a partition of a hub of its own."""
    from standins.eventhub_factory import Partition, routed_body

    now = datetime.now(UTC)
    partition = Partition(f"bench-direct-{uuid.uuid4().hex[:6]}", "0", first_enqueued=now, spacing=timedelta(0))
    partition.publish([routed_body(payload, topic=topic, at=now) for topic, payload in messages],
                      partition_keys=[device_of(m) for m in messages])
    return partition


async def direct_seconds(partition: Partition, numbers: range) -> float:
    """Seconds of ``telemetry_ingest`` over ``numbers`` of ``partition`` handed straight
    to it in batches of ``BATCH``, built before the clock (as :func:`stream_rates` runs it)."""
    batches = partition.batches(BATCH, numbers)
    start = time.perf_counter()
    await ingest_batches("telemetry", batches)
    return time.perf_counter() - start


async def until(done: Callable[[], bool], what: str, *running: asyncio.Task[None]) -> None:
    """Return once ``done()``; raise what ended one of ``running`` (the path's loops)
    early, or a TimeoutError after :data:`PATH_TIMEOUT`."""
    deadline = time.monotonic() + PATH_TIMEOUT
    while not done():
        for task in running:
            if task.done():
                task.result()  # its exception
                raise RuntimeError(f"the path stopped before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {PATH_TIMEOUT:g} s")
        await asyncio.sleep(0.005)


async def stored_once(prefix: str, since: datetime, messages: list[Message]) -> None:
    """Every one of ``messages`` archived exactly once (the simulator's own accounting,
    by content: device and sequence), nothing else of devices ``{prefix}-NNN``."""
    from shared.platform.storage import data_store
    from tools.simulate.stored import Sent, account, read_stored

    accounting = account([Sent(topic, payload, 0.0) for topic, payload in messages],
                         await read_stored(data_store().blob_service, prefix, since))
    problems = accounting.problems() + ([f"{accounting.duplicates} stored twice"] if accounting.duplicates else [])
    assert not problems and len(messages) > 0, f"{prefix}: {problems}"


async def path_overhead(through: Callable[[list[Message]], Awaitable[float]]) -> tuple[float, float]:
    """The best of :data:`PATH_ROUNDS` rounds: seconds of :data:`PATH_MESSAGES` readings
    ``through`` a path (its devices warmed up first), and of as many straight to
    ``telemetry_ingest``, half before the path and half after it, so that drift
    (Azurite filling up) hits both alike; the best, as a busy machine only ever slows a
    round. Each message of both sides is checked to be archived once."""
    tag = uuid.uuid4().hex[:6]
    since = datetime.now(UTC)
    path = path_messages(f"path{tag}", PATH_WARMUP + PATH_ROUNDS * PATH_MESSAGES)
    direct = path_messages(f"direct{tag}", PATH_ROUNDS * PATH_MESSAGES)
    partition = direct_partition(direct)  # one partition: each message at a place of its own
    await through(path[:PATH_WARMUP])  # the devices connected, the path's connections and partitions known
    numbers, half = range(partition.first_sequence, partition.next_sequence), PATH_MESSAGES // 2
    path_s, direct_s = [], []
    for at in range(0, PATH_ROUNDS * PATH_MESSAGES, PATH_MESSAGES):
        seconds = await direct_seconds(partition, numbers[at:at + half])
        path_s.append(await through(path[PATH_WARMUP + at:PATH_WARMUP + at + PATH_MESSAGES]))
        direct_s.append(seconds + await direct_seconds(partition, numbers[at + half:at + PATH_MESSAGES]))
    await stored_once(f"path{tag}", since, path)
    await stored_once(f"direct{tag}", since, direct)
    return min(path_s), min(direct_s)


async def simulator_overhead_ratio() -> dict[str, float]:
    """Stored messages per second through the local simulator's path (devices of
    :mod:`tools.simulate.fleet` publishing at QoS 1 to Mosquitto, the routing stand-in
    taking them off the broker and flushing as in a simulation: routed CloudEvents,
    Event Hub batches, ``telemetry_ingest``) against straight to the function. The
    devices publish as fast as the broker takes them off (at most
    :data:`PATH_WINDOW` in flight); the clock runs from the first publish until the
    stand-in's batch holding the last message returned, as the simulator's report
    measures its throughput."""
    import random

    from shared.commands.settings import CommandSettings
    from shared.platform.settings import settings_of
    from tools.simulate.fleet import SimDevice
    from tools.simulate.stand_in import StandIn

    broker = settings_of(CommandSettings).mqtt_broker_url
    # The hubs are the simulator's own (telemetry, partitions 0 and 1): its numbers go on
    # after whatever this storage archived of them before.
    stand_in = StandIn(broker, rng=random.Random(7), first_sequence=time.time_ns() // 1000)
    devices: dict[str, SimDevice] = {}
    stop = asyncio.Event()
    flusher = asyncio.create_task(stand_in.run(stop))

    async def through(messages: list[Message]) -> float:
        for device_id in sorted({device_of(m) for m in messages} - set(devices)):
            devices[device_id] = SimDevice(device_id, broker)
            await asyncio.to_thread(devices[device_id].connect)
        before, published = stand_in.received, 0

        def room() -> bool:  # the broker holds fewer than PATH_WINDOW not yet taken off
            return before + published - stand_in.received < PATH_WINDOW

        start = time.perf_counter()
        for message in messages:
            if published % PATH_DEVICES == 0:  # a round of the fleet: the stand-in's loop runs between rounds
                await asyncio.sleep(0)
                await until(room, "the broker took messages off", flusher)
            devices[device_of(message)].publish(*message)
            published += 1
        await until(lambda: all(m in stand_in.stored_at for m in messages),
                    f"{len(messages)} messages stored through the stand-in", flusher)
        return max(stand_in.stored_at[m] for m in messages) - start

    try:
        path_s, direct_s = await path_overhead(through)
    finally:
        stop.set()
        await flusher
        for device in devices.values():
            await asyncio.to_thread(device.disconnect)
        stand_in.close()
    rates = {"simulator_msgs_per_s": round(PATH_MESSAGES / path_s, 1),
             "simulator_direct_msgs_per_s": round(PATH_MESSAGES / direct_s, 1)}
    return rates | {"simulator_overhead_ratio": round(path_s / direct_s, 2)}


async def eventhubs_producer_overhead_ratio() -> dict[str, float]:
    """Stored messages per second through the Azure mode's ``--via eventhubs`` path (its
    devices and :class:`tools.simulate.azure.HubSender`: routed CloudEvents batched per
    device, sent with the async ``azure-eventhub`` producer over AMQP to the Event Hubs
    stand-in of :mod:`standins.eventhubs_amqp`, whose pump hands batches of at most 100 to
    ``telemetry_ingest`` as the host does) against straight to the function. Everything
    runs in this process, so the path's figure also pays the stand-in's side of the
    wire. The clock runs from the first message handed to the sender until the batch
    holding the last one returned from the function."""
    from standins.eventhubs_amqp.service import EventHubsStandIn
    from tools.simulate.azure import NO_BROKER, HubDevice, HubSender
    from tools.simulate.target import Target

    # The hubs are the simulator's own (telemetry): its numbers go on after whatever this
    # storage archived of them before.
    hubs = EventHubsStandIn(first_sequence=time.time_ns() // 1000)
    stored = {"messages": 0, "at": 0.0}

    def on_batch(hub: str, count: int) -> None:
        stored["messages"] += count
        stored["at"] = time.perf_counter()

    async with hubs.serving():
        sender = HubSender(Target(function_url="", eventhub_connection_string=hubs.connection_string),
                           credential=None)
        devices: dict[str, HubDevice] = {}
        stop = asyncio.Event()
        sending = asyncio.create_task(sender.run(stop))
        pump = asyncio.create_task(hubs.pump(stop, on_batch=on_batch))

        async def through(messages: list[Message]) -> float:
            for device_id in sorted({device_of(m) for m in messages} - set(devices)):
                devices[device_id] = HubDevice(device_id, NO_BROKER)
                devices[device_id].outbox = sender
            wanted = stored["messages"] + len(messages)
            start = time.perf_counter()
            for published, message in enumerate(messages):
                if published % PATH_DEVICES == 0:  # a round of the fleet, as in :func:`simulator_overhead_ratio`
                    await asyncio.sleep(0)
                devices[device_of(message)].publish(*message)
            await until(lambda: stored["messages"] >= wanted, f"{len(messages)} messages stored through Event Hubs",
                        sending, pump)
            return stored["at"] - start

        try:
            path_s, direct_s = await path_overhead(through)
        finally:
            stop.set()
            try:
                await asyncio.gather(sending, pump)
            finally:
                await sender.close()
    assert not hubs.rejected, hubs.rejected
    rates = {"eventhubs_producer_msgs_per_s": round(PATH_MESSAGES / path_s, 1),
             "eventhubs_direct_msgs_per_s": round(PATH_MESSAGES / direct_s, 1)}
    return rates | {"eventhubs_producer_overhead_ratio": round(path_s / direct_s, 2)}


def describe(figures: dict[str, Any]) -> list[str]:
    """What ``make bench`` prints of this module's figures."""
    return [
        f"simulator, local mode: {figures['simulator_msgs_per_s']} messages/s stored through MQTT QoS 1, "
        f"Mosquitto and the routing stand-in; straight to telemetry_ingest {figures['simulator_direct_msgs_per_s']}"
        f"/s; overhead ratio {figures['simulator_overhead_ratio']} (1: a simulation measures the app)",
        f"simulator, --via eventhubs: {figures['eventhubs_producer_msgs_per_s']} messages/s stored through the "
        f"azure-eventhub producer and the AMQP stand-in of Event Hubs; straight to telemetry_ingest "
        f"{figures['eventhubs_direct_msgs_per_s']}/s; overhead ratio {figures['eventhubs_producer_overhead_ratio']}",
    ]
