"""Telemetry and inference through the ingest functions: CPU, storage requests and
rates, in the small fleet's shape and the large one's, and a round of 10 000 devices."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import azure.functions as func

    from standins.eventhub_factory import Batch, Partition
    from standins.storage_requests import Requests


BATCH = 100
STREAM_DEVICES = 10  # a batch of 100 holds 10 messages of each
CPU_MESSAGES = 5000
CPU_ROUNDS = 5
COUNTED_BATCHES = 10
SPEED_MESSAGES = 2000
SPEED_CHUNKS = 4  # naive and ours alternate in chunks, so drift hits both alike
FLEET_DEVICES = 1000  # telemetry_fleet_msgs_per_s: one message of each, twice
MANY_DEVICES = 10_000  # the round of distinct devices (issue 18): one message of each, twice
STREAM_START = datetime(2026, 11, 20, 8, tzinfo=UTC)
SPACING = timedelta(milliseconds=100)  # enqueued times in the partition: 10 devices at 1 message/s
DEVICE_LAG = timedelta(milliseconds=150)  # a device stamps its reading before the broker receives it


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def telemetry_reading(n: int, at: datetime) -> dict[str, Any]:
    """The ``n``-th reading of a device, stamped by the device just before ``at``."""
    return {"timestamp": _stamp(at - DEVICE_LAG), "sequence": n,
            "metrics": {"cpuTemp": 55 + n % 20, "gpuUtil": round(0.5 + n % 37 / 100, 2), "fps": 29.7,
                        "diskFree": round(12.4 - n % 50 / 100, 2), "door": "closed" if n % 9 else "open"},
            "tags": {"firmware": "4.2.1", "site": "plant-3"}}


def telemetry_body(device: str, n: int, at: datetime) -> bytes:
    """A routed CloudEvent of one reading (as ``../shared/samples/routed-telemetry.json``)."""
    from standins.eventhub_factory import routed_body

    return routed_body(telemetry_reading(n, at), topic=f"devices/{device}/telemetry", at=at,
                       content_type="application/json")


def inference_body(device: str, n: int, at: datetime) -> bytes:
    """A routed CloudEvent of one result with three detections, base64 as an MQTT v3.1.1
    PUBLISH arrives (as ``../shared/samples/routed-inference-base64.json``)."""
    from standins.eventhub_factory import routed_body

    payload = {"timestamp": _stamp(at - DEVICE_LAG), "inferenceId": f"{device}-{n}", "frameId": f"frame-{n}",
               "model": {"name": "yolo-safety", "version": "3.1"}, "latencyMs": 18.4 + n % 7,
               "detections": [{"label": "person", "confidence": 0.94, "bbox": [0.12, 0.08, 0.2, 0.31]},
                              {"label": "helmet", "confidence": 0.88, "bbox": [0.14, 0.08, 0.06, 0.05]},
                              {"label": "vest", "confidence": round(0.6 + n % 30 / 100, 2)}]}
    return routed_body(payload, topic=f"devices/{device}/inference", at=at, payload_format="binary",
                       content_type="application/octet-stream")


def stream_partition(stream: str, count: int, devices: int) -> Partition:
    """A partition of a hub of its own (nothing archived yet) holding ``count``
    messages, message ``n`` from device ``n % devices``."""
    from standins.eventhub_factory import Partition

    tag = uuid.uuid4().hex[:6]
    partition = Partition(f"bench-{stream}-{tag}", "0", first_enqueued=STREAM_START, spacing=SPACING)
    body = telemetry_body if stream == "telemetry" else inference_body
    partition.publish([body(f"{tag}-{n % devices:04d}", n, STREAM_START + n * SPACING)
                       for n in range(count)])
    return partition


def telemetry_cpu_ratio() -> dict[str, float]:
    """Decode + validate + archive line against bare ``orjson.loads``, per message."""
    import orjson

    from shared.streams.decode import Accepted, decode

    bodies = [log.body for log in stream_partition("telemetry", CPU_MESSAGES, 50).log]
    now = STREAM_START + CPU_MESSAGES * SPACING  # when the last one was enqueued

    def ours() -> None:
        for body in bodies:
            for result in decode("telemetry", body, now=now):
                assert isinstance(result, Accepted), result
                orjson.dumps(result.archive)

    def bare() -> None:
        for body in bodies:
            orjson.loads(body)

    def best(work: Callable[[], None]) -> float:
        times = []
        for _ in range(CPU_ROUNDS):
            start = time.process_time()
            work()
            times.append(time.process_time() - start)
        return min(times)

    ours()  # models built, caches warm
    ours_s, bare_s = best(ours), best(bare)
    return {"telemetry_cpu_us_per_msg": round(ours_s / len(bodies) * 1e6, 2),
            "orjson_loads_us_per_msg": round(bare_s / len(bodies) * 1e6, 2),
            "telemetry_cpu_ratio": round(ours_s / bare_s, 2)}


async def ingest_batches(stream: str, batches: list[Batch]) -> None:
    """``{stream}_ingest`` over ``batches`` one after another, as the worker calls it
    (with the function's retry policy, so a failure raises instead of dead-lettering)."""
    from standins.invoke import InvocationContext, retry_policy, user_function

    name = f"{stream}_ingest"
    handler = user_function(name)
    max_retries = int(retry_policy(name)["max_retry_count"])
    for batch in batches:
        await handler(batch, InvocationContext(name, max_retry_count=max_retries))


async def archived_messages(stream: str, hub: str) -> int:
    """Messages in the archive blobs of ``hub`` (their metadata says how many)."""
    from shared.platform.storage import data_store
    from shared.platform.storage_names import INFERENCE_CONTAINER, TELEMETRY_CONTAINER

    container = await data_store().container(TELEMETRY_CONTAINER if stream == "telemetry" else INFERENCE_CONTAINER)
    total = 0
    async for blob in container.list_blobs(name_starts_with=f"{STREAM_START:%Y/%m/%d/%H}/{hub}-",
                                           include=["metadata"]):
        total += int(blob.metadata["messages"])
    return total


async def counted_telemetry_requests(batches: int, devices: int = STREAM_DEVICES) -> Requests:
    """The storage requests of ``batches`` batches of 100 from ``devices`` devices (in
    turn), through ``telemetry_ingest``, of a worker that already owns the partition
    and knows its devices (warmed by as many batches as take one message of each:
    tables known, the watermark and the partition's rows read, the devices' pointers
    written)."""
    from standins.storage_requests import counted_requests

    warming = -(-devices // BATCH)
    partition = stream_partition("telemetry", (warming + batches) * BATCH, devices)
    all_batches = partition.batches(BATCH)
    async with counted_requests() as requests:
        await ingest_batches("telemetry", all_batches[:warming])
        requests.seen.clear()
        await ingest_batches("telemetry", all_batches[warming:])
    return requests


async def telemetry_requests_per_1000() -> dict[str, float]:
    # Per batch: the archive blob, its watermark in ``appmeta`` and one transaction of
    # the latest state of its devices (up to 100): 30 per 1 000, whatever the fleet's
    # shape. The floor of the design before it (a state write per device) was 110 for
    # 10 devices a batch and 1 010 for 100.
    requests = await counted_telemetry_requests(COUNTED_BATCHES)
    fleet = await counted_telemetry_requests(COUNTED_BATCHES, BATCH)
    return {"telemetry_requests_per_1000": round(len(requests.seen) * 1000 / (COUNTED_BATCHES * BATCH), 1),
            "telemetry_fleet_requests_per_1000": round(len(fleet.seen) * 1000 / (COUNTED_BATCHES * BATCH), 1)}


async def many_devices_round() -> dict[str, float]:
    """MANY_DEVICES devices through ``telemetry_ingest`` in batches of 100, one message
    each, twice: first as new devices (a pointer row each, the partition's rows loaded
    once), then as known ones; storage requests and the worker's CPU per message of each."""
    from standins.storage_requests import counted_requests

    partition = stream_partition("telemetry", 2 * MANY_DEVICES, MANY_DEVICES)
    figures: dict[str, float] = {}
    for name, numbers in (("new", range(0, MANY_DEVICES)), ("known", range(MANY_DEVICES, 2 * MANY_DEVICES))):
        async with counted_requests() as requests:
            cpu = time.process_time()
            await ingest_batches("telemetry", partition.batches(BATCH, numbers))
            figures[f"devices_10k_{name}_cpu_us_per_msg"] = round((time.process_time() - cpu) / MANY_DEVICES * 1e6, 1)
        figures[f"devices_10k_{name}_requests_per_msg"] = round(len(requests.seen) / MANY_DEVICES, 3)
    assert await archived_messages("telemetry", partition.hub) == 2 * MANY_DEVICES, "every message archived"
    return figures


async def naive_telemetry(events: Sequence[func.EventHubEvent]) -> None:
    """What quickstart samples do, one event per invocation: ``json.loads``, validate,
    one blob of the message and one upsert of the device's latest state."""
    from shared.platform.keys import device_key
    from shared.platform.storage import data_store
    from shared.platform.storage_names import DEVICES_TABLE, TELEMETRY_CONTAINER
    from shared.streams.limits import DEFAULT_LIMITS
    from shared.streams.messages import bounded_models

    model = bounded_models(DEFAULT_LIMITS).telemetry
    container = await data_store().container(TELEMETRY_CONTAINER)
    table = await data_store().table(DEVICES_TABLE)
    for event in events:
        document = json.loads(event.get_body())
        device = document["deviceid"]
        message = model.model_validate(document["data"])
        await container.upload_blob(f"naive/{device}/{document['id']}.json", json.dumps(document["data"]),
                                    overwrite=True)
        await table.upsert_entity({"PartitionKey": device_key(device), "RowKey": "naive-telemetry",
                                   "timestamp": message.timestamp.isoformat(),
                                   "metrics": json.dumps(message.metrics)})


@contextlib.contextmanager
def app_log_records() -> Iterator[list[logging.LogRecord]]:
    """The log records the app and its SDKs write meanwhile, with the root logger at
    Information as the worker sets it (the worker ships each to the host as a user
    log). The worker runtime's own records (logger ``azure.functions``: one "Function
    name" line per invocation) are the platform's and not counted."""
    records: list[logging.LogRecord] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not record.name.startswith("azure.functions"):
                records.append(record)

    root = logging.getLogger()
    handler, level = Count(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def known_fleet(size: int) -> tuple[Partition, list[Batch]]:
    """A partition of ``FLEET_DEVICES`` devices, one message each, twice: the first
    round ingested (in batches of ``size``) so that the worker knows the devices' rows,
    the second's batches returned to be timed."""
    fleet = stream_partition("telemetry", 2 * FLEET_DEVICES, FLEET_DEVICES)
    await ingest_batches("telemetry", fleet.batches(size, range(0, FLEET_DEVICES)))
    return fleet, fleet.batches(size, range(FLEET_DEVICES, 2 * FLEET_DEVICES))


async def stream_rates() -> dict[str, float]:
    """Messages per second: ours and naive (alternating chunks), the fleet's shape, inference."""
    # Warm-up on hubs of their own: clients, tables and containers, models.
    await ingest_batches("telemetry", stream_partition("telemetry", BATCH, STREAM_DEVICES).batches(BATCH))
    await ingest_batches("inference", stream_partition("inference", BATCH, STREAM_DEVICES).batches(BATCH))
    await naive_telemetry(stream_partition("telemetry", BATCH, STREAM_DEVICES).deliver())

    ours = stream_partition("telemetry", SPEED_MESSAGES, STREAM_DEVICES)
    naive = stream_partition("telemetry", SPEED_MESSAGES, STREAM_DEVICES)
    ours_batches = ours.batches(BATCH)
    naive_events = [batch[0] for batch in naive.batches(1)]  # cardinality one: one event per invocation
    per_chunk = -(-len(ours_batches) // SPEED_CHUNKS)
    ours_s = naive_s = ours_cpu = 0.0
    for chunk in range(SPEED_CHUNKS):
        batches = ours_batches[chunk * per_chunk:(chunk + 1) * per_chunk]
        start = time.perf_counter()
        await naive_telemetry(naive_events[chunk * per_chunk * BATCH:(chunk + 1) * per_chunk * BATCH])
        naive_s += time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        await ingest_batches("telemetry", batches)
        ours_s += time.perf_counter() - start
        ours_cpu += time.process_time() - cpu  # this process only: Azurite runs in its own
    assert await archived_messages("telemetry", ours.hub) == SPEED_MESSAGES, "every message archived"

    # A large fleet's partition: each message of a batch from another device.
    fleet, fleet_batches = await known_fleet(BATCH)
    with app_log_records() as records:
        start, cpu = time.perf_counter(), time.process_time()
        await ingest_batches("telemetry", fleet_batches)
        fleet_s, fleet_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert await archived_messages("telemetry", fleet.hub) == 2 * FLEET_DEVICES, "every message archived"

    # The same shape in the batches a deployment gets: host.json's maxEventBatchSize
    # (256), where the per-batch cost spreads over more messages. What sizes Flex.
    from standins.invoke import max_event_batch_size

    deployed, deployed_batches = await known_fleet(max_event_batch_size())
    cpu = time.process_time()
    await ingest_batches("telemetry", deployed_batches)
    deployed_cpu = time.process_time() - cpu
    assert await archived_messages("telemetry", deployed.hub) == 2 * FLEET_DEVICES, "every message archived"

    inference = stream_partition("inference", SPEED_MESSAGES, STREAM_DEVICES)
    inference_batches = inference.batches(BATCH)
    start = time.perf_counter()
    await ingest_batches("inference", inference_batches)
    inference_s = time.perf_counter() - start
    assert await archived_messages("inference", inference.hub) == SPEED_MESSAGES, "every result archived"

    rates = {"telemetry_msgs_per_s": round(SPEED_MESSAGES / ours_s, 1),
             "naive_telemetry_msgs_per_s": round(SPEED_MESSAGES / naive_s, 1),
             "telemetry_fleet_msgs_per_s": round(FLEET_DEVICES / fleet_s, 1),
             # The worker's own CPU per message (the SDKs' request handling included):
             # what sizes instances once storage answers at Azure's latency, not Azurite's.
             "telemetry_worker_cpu_us_per_msg": round(ours_cpu / SPEED_MESSAGES * 1e6, 1),
             "telemetry_fleet_worker_cpu_us_per_msg": round(fleet_cpu / FLEET_DEVICES * 1e6, 1),
             "telemetry_fleet_host_batch_cpu_us_per_msg": round(deployed_cpu / FLEET_DEVICES * 1e6, 1),
             # 100 000 messages/s in that shape, at one busy core an instance (docs/capacity.md).
             "flex_cores_for_100k_msgs_per_s": round(100_000 * deployed_cpu / FLEET_DEVICES, 1),
             "inference_msgs_per_s": round(SPEED_MESSAGES / inference_s, 1),
             "log_records_per_1000_messages": round(len(records) * 1000 / FLEET_DEVICES, 2)}
    rates["telemetry_speedup_vs_naive"] = round(naive_s / ours_s, 2)
    # The fleet's shape against the small fleet's, CPU per message of the same worker.
    rates["telemetry_fleet_cpu_ratio"] = round((fleet_cpu / FLEET_DEVICES) / (ours_cpu / SPEED_MESSAGES), 2)
    return rates


async def stream_figures() -> dict[str, float]:
    figures = telemetry_cpu_ratio()
    figures |= await telemetry_requests_per_1000()
    figures |= await stream_rates()
    return figures | await many_devices_round()


def describe(figures: dict[str, Any]) -> list[str]:
    """What ``make bench`` prints of this module's figures."""
    return [
        f"telemetry CPU: decode + validate + archive line {figures['telemetry_cpu_us_per_msg']} us/message, "
        f"orjson.loads {figures['orjson_loads_us_per_msg']} us, ratio {figures['telemetry_cpu_ratio']} "
        "(target <= 8)",
        f"telemetry storage requests: {figures['telemetry_requests_per_1000']} per 1000 messages, batches of "
        f"{BATCH} from {STREAM_DEVICES} devices (target <= 150); {figures['telemetry_fleet_requests_per_1000']} "
        f"from {BATCH} devices (target <= 50; floor 30)",
        f"telemetry: {figures['telemetry_msgs_per_s']} messages/s in batches of {BATCH}, naive one at a time "
        f"{figures['naive_telemetry_msgs_per_s']}/s, speedup {figures['telemetry_speedup_vs_naive']} "
        "(target >= 10)",
        f"telemetry, every message from another device: {figures['telemetry_fleet_msgs_per_s']} messages/s; "
        f"worker CPU per message {figures['telemetry_worker_cpu_us_per_msg']} us (10 devices), "
        f"{figures['telemetry_fleet_worker_cpu_us_per_msg']} us (every message from another device), ratio "
        f"{figures['telemetry_fleet_cpu_ratio']} (target <= 2); in host.json's batches "
        f"{figures['telemetry_fleet_host_batch_cpu_us_per_msg']} us, so 100 000 messages/s need "
        f"{figures['flex_cores_for_100k_msgs_per_s']} busy cores (Flex instances at one core each; goal <= 25)",
        f"{MANY_DEVICES} devices, one message each, twice: new {figures['devices_10k_new_requests_per_msg']} "
        f"storage requests and {figures['devices_10k_new_cpu_us_per_msg']} us of worker CPU per message, known "
        f"{figures['devices_10k_known_requests_per_msg']} and {figures['devices_10k_known_cpu_us_per_msg']} us",
        f"inference: {figures['inference_msgs_per_s']} messages/s in batches of {BATCH}",
        f"logs: {figures['log_records_per_1000_messages']} records per 1000 messages of the fleet's shape, root "
        "logger at Information (target <= 5)",
    ]
