"""``make bench``: figures for cold start and life cycle throughput.

* ``import_ratio``: time to import ``function_app`` in a fresh interpreter divided
  by the time to import ``azure.functions`` alone (best of several, same run).
* ``cold_request_ratio``: the first request of a fresh worker process (the worker
  runtime imported, as it is before the host's init): the host's init request, in
  which the runtime imports ``function_app`` and indexes it, then one ``get_device``
  invocation for a stored device, as the host sends it; divided by the same work
  done naively: import ``azure.functions`` and ``azure.data.tables.aio``, build a
  ``TableClient``, one ``get_entity`` of that device's row (fresh interpreters against
  one Azurite, best of several, same run).
* life cycle events applied per second through ``client_lifecycle`` against Azurite,
  one at a time and 16 at once, and as a ratio to a baseline of bare Table upserts
  (one per event, the I/O floor) run in the same process.
* ``telemetry_cpu_ratio``: CPU time per message of decode, validation and the
  archive line's serialisation, divided by a bare ``orjson.loads`` of the same
  bodies (routed CloudEvents), same process, best of several rounds.
* ``telemetry_requests_per_1000``: storage requests per 1 000 messages of a worker
  that owns the partition, batches of 100 from 10 devices, through
  ``telemetry_ingest``, counted by a request hook in the storage clients' pipelines.
* ``telemetry_speedup_vs_naive``: messages per second through ``telemetry_ingest``
  over batches of 100 (one partition, one batch at a time, as one worker runs it),
  divided by those of a naive handler in this module (one message at a time:
  ``json.loads``, validate, one blob and one Table upsert, as quickstart samples
  do), same clients, same Azurite, same process; also ``telemetry_msgs_per_s``,
  ``telemetry_fleet_msgs_per_s`` (every message of a batch from another device, as
  in a large fleet's partition), the worker's CPU per message of both, and
  ``inference_msgs_per_s``; ``log_records_per_1000_messages``, the records the app
  and its SDKs write with the root logger at Information during the fleet-shaped
  round (the worker ships each to the host).
* command figures, with Mosquitto beside Azurite (the ``mqtt`` transport):
  ``command_overhead_ratio``, the median latency of ``send_command`` to an online
  device (an MQTT v5 client subscribed to its commands, answering nothing) divided
  by the median of the least a tracked command needs, one Table insert of a command
  row and one QoS 1 publish of the same message awaited until its PUBACK (sequential,
  alternating chunks, same process); ``command_p99_ms``; ``commands_per_s`` with 32
  requests at once; ``fleet_1000_seconds``, from a fleet command's request until all
  1 000 commands are ``sent`` (its queue drained as the host would); life cycle
  connects per second of devices without and with a pending command, and the
  storage requests of one such connect.
* the simulator's paths, rounds of :data:`PATH_MESSAGES` telemetry messages from 10
  devices, each as a ratio to as many handed straight to ``telemetry_ingest`` in
  batches of 100 (half before the path, half after; best of 3 rounds, same process):
  ``simulator_overhead_ratio``, through local mode's path (the fleet's MQTT v5
  devices publishing at QoS 1 to Mosquitto, the routing stand-in's Inbox, routed
  CloudEvents in Event Hub batches, ``telemetry_ingest``, Azurite); and
  ``eventhubs_producer_overhead_ratio``, through ``--via eventhubs``'s sender (the
  async ``azure-eventhub`` producer, batched per device) over AMQP to the Event Hubs
  stand-in, whose pump feeds ``telemetry_ingest``. Both as the path's seconds over the
  direct seconds (1: the simulator measures the app), with the messages stored per
  second of each; every message is checked to be archived once.

The last line of output is one JSON object of the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from standins.services import ROOT

if TYPE_CHECKING:
    import azure.functions as func

    from standins.edge import Device
    from standins.eventhub_factory import Batch, Partition
    from standins.storage_requests import Requests

REPEATS = 7
COLD_DEVICE = "cold-start-device"

# Both sides start their clock after asyncio is imported and a loop exists, and the
# app's side after the worker runtime is imported: the worker process has all three
# before the host's init request makes it load the app. The app's side is timed from
# that init (indexing imports function_app) through one get_device invocation, as the
# host sends it. Clients are closed after the clock.
APP_COLD_REQUEST = """
import asyncio, time
import azure_functions_runtime
from standins import triggers
from standins.host import Host
loop = asyncio.new_event_loop()
start = time.perf_counter()
host = Host()
value = loop.run_until_complete(host.invoke("get_device", triggers.http_request(
    method="GET", url="http://localhost/api/devices/{device}", headers={{}}, query={{}},
    params={{"deviceId": "{device}"}}, body=b"")))
elapsed = time.perf_counter() - start
response = triggers.http_result(value)
assert response.status == 200, response.body
from shared.platform.storage import reset_data_store
loop.run_until_complete(reset_data_store())
print(elapsed)
"""
NAIVE_COLD_REQUEST = """
import asyncio, os, time
loop = asyncio.new_event_loop()
start = time.perf_counter()
import azure.functions
from azure.data.tables.aio import TableClient
client = TableClient.from_connection_string(os.environ["DataStorage"], table_name="{table}")
entity = loop.run_until_complete(client.get_entity("{partition}", "{row}"))
elapsed = time.perf_counter() - start
assert entity["deviceId"] == "{device}", entity
loop.run_until_complete(client.close())
print(elapsed)
"""
DEVICES = 50
SESSIONS = 4  # per device: 8 events each, 400 in all


def fresh_seconds(code: str, env: dict[str, str] | None = None) -> float:
    """Run ``code`` in a fresh interpreter with a clean environment; it prints seconds."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         env={"PATH": os.environ.get("PATH", ""), **(env or {})},
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"a fresh interpreter failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def import_seconds(module: str) -> float:
    return fresh_seconds(f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)")


def import_ratio() -> dict[str, float]:
    base, app = [], []
    for _ in range(REPEATS):  # interleaved, so drift hits both alike
        base.append(import_seconds("azure.functions"))
        app.append(import_seconds("function_app"))
    return {"import_azure_functions_ms": round(min(base) * 1000, 1),
            "import_function_app_ms": round(min(app) * 1000, 1),
            "import_ratio": round(min(app) / min(base), 3)}


async def store_cold_device() -> None:
    """The device both sides of ``cold_request_ratio`` read, written once through the app."""
    from standins import event_factory as ev
    from standins.invoke import user_function

    handler = user_function("client_lifecycle")
    at = datetime(2026, 11, 20, tzinfo=UTC)
    await handler(ev.created_or_updated(COLD_DEVICE, at, attributes={"site": "bench"}))
    await handler(ev.connected(COLD_DEVICE, 1, at + timedelta(minutes=1)))


def cold_request_ratio() -> dict[str, float]:
    from shared.lifecycle.registry import REGISTRY_ROW
    from shared.platform.keys import device_key
    from shared.platform.storage_names import DEVICES_TABLE

    env = {"DataStorage": os.environ["DataStorage"]}
    app_code = APP_COLD_REQUEST.format(device=COLD_DEVICE)
    naive_code = NAIVE_COLD_REQUEST.format(table=DEVICES_TABLE, partition=device_key(COLD_DEVICE), row=REGISTRY_ROW,
                                           device=COLD_DEVICE)
    naive, app = [], []
    for _ in range(REPEATS):  # interleaved, so drift hits both alike
        naive.append(fresh_seconds(naive_code, env))
        app.append(fresh_seconds(app_code, env))
    return {"cold_request_naive_ms": round(min(naive) * 1000, 1),
            "cold_request_app_ms": round(min(app) * 1000, 1),
            "cold_request_ratio": round(min(app) / min(naive), 3)}


async def azurite_figures() -> dict[str, float]:
    from shared.platform.settings import reset_settings

    os.environ["AzureWebJobsStorage"] = os.environ["DataStorage"]  # the host's queues in the same Azurite
    reset_settings()
    await store_cold_device()
    figures = await asyncio.to_thread(cold_request_ratio)  # fresh interpreters; this process waits
    figures |= await lifecycle_rates()
    figures |= await stream_figures()
    figures |= await simulator_overhead_ratio()
    figures |= await eventhubs_producer_overhead_ratio()
    return figures | await command_figures()


def documents(prefix: str) -> list[dict[str, Any]]:
    from standins import event_factory as ev

    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    docs = []
    for d in range(DEVICES):
        device = f"{prefix}-{d:03d}"
        for seq in range(1, SESSIONS + 1):
            at = t0 + timedelta(minutes=seq)
            docs += [ev.connected(device, seq, at), ev.disconnected(device, seq, at, reason="ConnectionLost")]
    return docs


async def lifecycle_rates() -> dict[str, float]:
    from shared.platform.storage import data_store
    from shared.platform.storage_names import DEVICES_TABLE
    from standins.invoke import user_function

    handler = user_function("client_lifecycle")
    table = await data_store().table(DEVICES_TABLE)

    async def baseline(docs: list[dict[str, Any]]) -> None:
        for doc in docs:  # one bare upsert per event: what any design pays at least
            await table.upsert_entity({"PartitionKey": doc["id"], "RowKey": "baseline", "doc": json.dumps(doc)})

    async def sequential(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            await handler(doc)

    async def concurrent(docs: list[dict[str, Any]]) -> None:
        # 16 devices at a time, each device's events in order, as Event Grid spreads them.
        docs = sorted(docs, key=lambda d: (d["eventTime"], d["eventType"].endswith("Disconnected"), d["subject"]))
        for i in range(0, len(docs), 16):
            await asyncio.gather(*(handler(d) for d in docs[i:i + 16]))

    await sequential(documents("warmup")[:20])
    rates: dict[str, float] = {}
    for name, run in (("baseline_upserts_per_s", baseline), ("lifecycle_events_per_s", sequential),
                      ("lifecycle_events_per_s_16_concurrent", concurrent)):
        docs = documents(name)
        start = time.perf_counter()
        await run(docs)
        rates[name] = round(len(docs) / (time.perf_counter() - start), 1)
    rates["lifecycle_to_baseline_ratio"] = round(rates["lifecycle_events_per_s"] / rates["baseline_upserts_per_s"], 3)
    return rates


# --------------------------------------------------------------------------- streams

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

    # A large fleet's partition: each message of a batch from another device. The
    # first round makes the worker know the devices' rows, the second is timed.
    fleet = stream_partition("telemetry", 2 * FLEET_DEVICES, FLEET_DEVICES)
    first, second = range(0, FLEET_DEVICES), range(FLEET_DEVICES, 2 * FLEET_DEVICES)
    await ingest_batches("telemetry", fleet.batches(BATCH, first))
    fleet_batches = fleet.batches(BATCH, second)
    with app_log_records() as records:
        start, cpu = time.perf_counter(), time.process_time()
        await ingest_batches("telemetry", fleet_batches)
        fleet_s, fleet_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert await archived_messages("telemetry", fleet.hub) == 2 * FLEET_DEVICES, "every message archived"

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


# --------------------------------------------------------------------------- the simulator's paths

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
    from standins.eventhubs_amqp import EventHubsStandIn
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


# --------------------------------------------------------------------------- commands

COMMAND_SENDS = 200  # sequential sends, and as many baseline inserts + publishes
COMMAND_CHUNKS = 4  # baseline and ours alternate in chunks, so drift hits both alike
CONCURRENT_REQUESTS = 32
CONCURRENT_ROUNDS = 8
COMMAND_DEVICES = 4  # online devices the sends go to
FLEET_COMMAND_DEVICES = 1000
CONNECTS = 120  # life cycle connects of devices without, and as many with, a pending command
CONNECT_CHUNKS = 4
REGISTER_AT_ONCE = 32  # life cycle events in flight while devices are set up


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that was measured."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def command_request(device_id: str, n: int) -> func.HttpRequest:
    from standins.invoke import http_request

    return http_request("POST", f"devices/{device_id}/commands", route_params={"deviceId": device_id},
                        body={"name": "reboot", "payload": {"delaySeconds": 5, "n": n}, "timeoutSeconds": 300})


async def lifecycle_events(documents: list[dict[str, Any]]) -> None:
    """``client_lifecycle`` over ``documents``, ``REGISTER_AT_ONCE`` at a time."""
    from standins.invoke import user_function

    handler = user_function("client_lifecycle")
    for i in range(0, len(documents), REGISTER_AT_ONCE):
        await asyncio.gather(*(handler(d) for d in documents[i:i + REGISTER_AT_ONCE]))


async def register(device_ids: list[str], *, attributes: dict[str, Any] | None = None) -> None:
    """Devices created in the registry, never connected."""
    from standins import event_factory as ev

    at = datetime.now(UTC) - timedelta(hours=1)
    await lifecycle_events([ev.created_or_updated(d, at, attributes=attributes) for d in device_ids])


async def connect(device_ids: list[str]) -> None:
    """The broker's connect events of registered devices: the registry says online."""
    from standins import event_factory as ev

    await lifecycle_events([ev.connected(d, 1, datetime.now(UTC) - timedelta(minutes=30)) for d in device_ids])


async def online_devices(tag: str, count: int) -> list[Device]:
    """Devices in the registry, connected to the broker and subscribed, answering
    nothing (so no answer competes with the sends)."""
    from shared.commands.settings import CommandSettings
    from shared.platform.settings import settings_of
    from standins.edge import Device

    broker = settings_of(CommandSettings).mqtt_broker_url
    devices = [Device(f"{tag}-online-{n}", broker, behaviour="silent") for n in range(count)]
    await register([d.device_id for d in devices])
    for device in devices:
        await asyncio.to_thread(device.connect)  # subscribed before the registry says connected
    await connect([d.device_id for d in devices])
    return devices


async def send_all(requests: list[func.HttpRequest], status: str) -> list[dict[str, Any]]:
    """``send_command`` for each request at once; each must be created with ``status``."""
    from standins.invoke import json_of, user_function

    handler = user_function("send_command")
    responses = await asyncio.gather(*(handler(r) for r in requests))
    sent = [json_of(r) for r in responses]
    for response, command in zip(responses, sent, strict=True):
        assert response.status_code == 202 and command["status"] == status, (response.status_code, command)
    return sent


async def command_latency(device: Device) -> dict[str, float]:
    """``send_command`` to an online device against one Table insert of a command row
    and one QoS 1 publish of the same message (PUBACK awaited), one at a time."""
    import orjson

    from shared.commands.models import Command
    from shared.commands.mqtt_transport import MqttTransport
    from shared.commands.service import publication
    from shared.commands.settings import CommandSettings
    from shared.commands.store import command_row, new_command_id
    from shared.platform.settings import settings_of
    from shared.platform.storage import data_store
    from shared.platform.storage_names import COMMANDS_TABLE
    from standins.invoke import user_function

    settings = settings_of(CommandSettings)
    bare = MqttTransport.from_url(settings.mqtt_broker_url, username=settings.mqtt_username,
                                  password=settings.mqtt_password)  # a connection of its own
    table = await data_store().table(COMMANDS_TABLE)
    handler = user_function("send_command")
    partition = f"~bench|{uuid.uuid4().hex[:8]}"  # beside the commands, in no device's partition

    def least(n: int) -> tuple[dict[str, Any], Any]:
        """The row and the message of a command, built before the clock starts."""
        now = datetime.now(UTC)
        command = Command(command_id=new_command_id(now), device_id=device.device_id, name="reboot",
                          payload={"delaySeconds": 5, "n": n}, status="pending", created_at=now,
                          expires_at=now + timedelta(seconds=300), issued_by="function-key")
        entity = {"PartitionKey": partition, "RowKey": command_row(command.command_id),
                  "doc": orjson.dumps(command.to_json_dict()).decode(), "status": command.status}
        return entity, publication(command, now)

    async def baseline(n: int) -> float:
        entity, message = least(n)
        start = time.perf_counter()
        await table.create_entity(entity)
        await bare.publish(message)
        return time.perf_counter() - start

    async def ours(n: int) -> float:
        request = command_request(device.device_id, n)
        start = time.perf_counter()
        response = await handler(request)
        elapsed = time.perf_counter() - start
        assert response.status_code == 202 and b'"status":"sent"' in response.get_body(), response.get_body()
        return elapsed

    try:
        for n in range(5):  # warm-up: clients, connections, models
            await baseline(-1 - n)
            await ours(-1 - n)
        base_s: list[float] = []
        ours_s: list[float] = []
        per_chunk = -(-COMMAND_SENDS // COMMAND_CHUNKS)
        for chunk in range(COMMAND_CHUNKS):
            numbers = range(chunk * per_chunk, min(COMMAND_SENDS, (chunk + 1) * per_chunk))
            base_s += [await baseline(n) for n in numbers]
            ours_s += [await ours(n) for n in numbers]
    finally:
        await bare.close()
    await asyncio.to_thread(device.wait_for, 2 * (5 + COMMAND_SENDS), timeout=30)  # every publish arrived
    base, median = statistics.median(base_s), statistics.median(ours_s)
    return {"command_baseline_ms": round(base * 1000, 2), "command_median_ms": round(median * 1000, 2),
            "command_p99_ms": round(percentile(ours_s, 0.99) * 1000, 2),
            "command_overhead_ratio": round(median / base, 2)}


async def commands_per_s(devices: list[Device]) -> dict[str, float]:
    """``CONCURRENT_REQUESTS`` sends at once, spread over the online devices, in rounds."""
    rounds = [[command_request(devices[i % len(devices)].device_id, r * CONCURRENT_REQUESTS + i)
               for i in range(CONCURRENT_REQUESTS)] for r in range(CONCURRENT_ROUNDS)]
    await send_all(rounds[0][:4], "sent")  # warm
    start = time.perf_counter()
    for requests in rounds:
        await send_all(requests, "sent")
    elapsed = time.perf_counter() - start
    return {"commands_per_s": round(CONCURRENT_REQUESTS * CONCURRENT_ROUNDS / elapsed, 1)}


async def lifecycle_connects() -> dict[str, float]:
    """Connect events, one at a time, of registered devices that never connected:
    without a pending command (a read and a write of the registry row and the index
    row, as before commands existed) and with one (which the connect publishes);
    alternating chunks."""
    from shared.commands.store import CommandStore
    from shared.platform.storage import data_store
    from standins import event_factory as ev
    from standins.invoke import user_function

    tag = uuid.uuid4().hex[:6]
    idle = [f"{tag}-idle-{n:04d}" for n in range(CONNECTS)]
    waiting = [f"{tag}-waiting-{n:04d}" for n in range(CONNECTS)]
    await register(idle + waiting)
    queued = []
    for i in range(0, CONNECTS, REGISTER_AT_ONCE):
        queued += await send_all([command_request(d, 0) for d in waiting[i:i + REGISTER_AT_ONCE]], "pending")
    handler = user_function("client_lifecycle")
    at = datetime.now(UTC) - timedelta(minutes=1)

    cpu = {"idle": 0.0}

    async def connects(devices: list[str]) -> float:
        documents = [ev.connected(d, 1, at) for d in devices]
        start, started = time.perf_counter(), time.process_time()
        for document in documents:
            await handler(document)
        if devices and devices[0] in idle:
            cpu["idle"] += time.process_time() - started
        return time.perf_counter() - start

    idle_s = waiting_s = 0.0
    per_chunk = -(-CONNECTS // CONNECT_CHUNKS)
    for chunk in range(CONNECT_CHUNKS):
        part = slice(chunk * per_chunk, (chunk + 1) * per_chunk)
        idle_s += await connects(idle[part])
        waiting_s += await connects(waiting[part])
    store = CommandStore(data_store())
    after = await asyncio.gather(*(store.get(c["deviceId"], c["commandId"]) for c in queued))
    assert all(c is not None and c.status == "sent" for c in after), "each connect published its command"
    return {"lifecycle_connects_per_s_no_pending": round(CONNECTS / idle_s, 1),
            "lifecycle_connects_per_s_with_pending": round(CONNECTS / waiting_s, 1),
            # The worker's CPU per connect: what a connect storm costs in instances.
            "lifecycle_connect_cpu_us": round(cpu["idle"] / CONNECTS * 1e6, 1)}


async def counted_connect(*, pending: bool) -> tuple[str, Requests]:
    """The device and the storage requests of its connect event: registered, never
    connected, with one pending command or none, in a worker that has handled one
    such connect already (tables known)."""
    from standins import event_factory as ev
    from standins.invoke import user_function
    from standins.storage_requests import counted_requests

    tag = uuid.uuid4().hex[:6]
    warm, device = f"{tag}-warm", f"{tag}-counted"
    await register([warm, device])
    if pending:
        await send_all([command_request(warm, 0), command_request(device, 0)], "pending")
    handler = user_function("client_lifecycle")
    at = datetime.now(UTC) - timedelta(minutes=1)
    async with counted_requests() as requests:
        await handler(ev.connected(warm, 1, at))
        requests.seen.clear()
        await handler(ev.connected(device, 1, at))
    return device, requests


async def fleet_seconds() -> dict[str, float]:
    """Seconds from a fleet command's request (targeting by attribute) until all of its
    ``FLEET_COMMAND_DEVICES`` commands are ``sent``: the first ones inline, the rest
    through the ``fleet-fanout`` queue, drained as the host's trigger would."""
    from standins.invoke import drain_queue, http_request, json_of, user_function

    tag = uuid.uuid4().hex[:6]
    devices = [f"{tag}-fleet-{n:04d}" for n in range(FLEET_COMMAND_DEVICES)]
    # Online by their life cycle events; no MQTT client is needed: the broker
    # acknowledges a publish that no one subscribes to.
    await register(devices, attributes={"benchFleet": tag})
    await connect(devices)
    get_job = user_function("get_fleet_command")
    start = time.perf_counter()
    response = await user_function("send_fleet_command")(http_request(
        "POST", "commands", body={"name": "snapshot", "target": {"attributes": {"benchFleet": tag}}}))
    assert response.status_code == 202, response.get_body()
    job = json_of(response)
    assert job["total"] == FLEET_COMMAND_DEVICES, job
    counts = job["counts"]
    while counts.get("sent") != FLEET_COMMAND_DEVICES:
        handled = await drain_queue("fleet-fanout", "fleet_fanout")
        counts = json_of(await get_job(http_request("GET", f"commands/{job['jobId']}",
                                                    route_params={"jobId": job["jobId"]})))["counts"]
        assert handled or counts.get("sent") == FLEET_COMMAND_DEVICES, f"nothing left to do, yet {counts}"
    return {f"fleet_{FLEET_COMMAND_DEVICES}_seconds": round(time.perf_counter() - start, 2)}


async def command_figures() -> dict[str, float]:
    """The command figures; ``MQTT_BROKER_URL`` and ``AzureWebJobsStorage`` must point
    at the broker and the Azurite in use."""
    from shared.commands.transports import reset_transport
    from shared.platform.host_storage import reset_queues

    await reset_transport()  # built from the settings as they are now
    devices = await online_devices(uuid.uuid4().hex[:6], COMMAND_DEVICES)
    try:
        figures = await command_latency(devices[0])
        figures |= await commands_per_s(devices)
        figures |= await lifecycle_connects()
        for pending in (False, True):
            _, requests = await counted_connect(pending=pending)
            figures[f"connect_requests_{'with' if pending else 'no'}_pending"] = float(len(requests.seen))
        return figures | await fleet_seconds()
    finally:
        for device in devices:
            await asyncio.to_thread(device.disconnect)
        await reset_transport()
        await reset_queues()


def main() -> None:
    figures: dict[str, Any] = {"python": sys.version.split()[0]}
    figures |= import_ratio()
    print(f"import: function_app {figures['import_function_app_ms']} ms, azure.functions "
          f"{figures['import_azure_functions_ms']} ms, ratio {figures['import_ratio']} (target <= 1.6)")
    from standins.invoke import run_against_azurite
    from standins.services import run_mosquitto

    with run_mosquitto() as broker:
        figures |= run_against_azurite(azurite_figures, {"MQTT_BROKER_URL": broker.url, "COMMAND_TRANSPORT": "mqtt"})
    print(f"cold request: function_app + get_device {figures['cold_request_app_ms']} ms, azure.functions + "
          f"TableClient + get_entity {figures['cold_request_naive_ms']} ms, ratio {figures['cold_request_ratio']} "
          "(target <= 1.3)")
    print(f"life cycle: {figures['lifecycle_events_per_s']} events/s one at a time, "
          f"{figures['lifecycle_events_per_s_16_concurrent']} events/s 16 at once; bare upserts "
          f"{figures['baseline_upserts_per_s']}/s (ratio {figures['lifecycle_to_baseline_ratio']})")
    print(f"telemetry CPU: decode + validate + archive line {figures['telemetry_cpu_us_per_msg']} us/message, "
          f"orjson.loads {figures['orjson_loads_us_per_msg']} us, ratio {figures['telemetry_cpu_ratio']} "
          "(target <= 8)")
    print(f"telemetry storage requests: {figures['telemetry_requests_per_1000']} per 1000 messages, batches of "
          f"{BATCH} from {STREAM_DEVICES} devices (target <= 150); {figures['telemetry_fleet_requests_per_1000']} "
          f"from {BATCH} devices (target <= 50; floor 30)")
    print(f"telemetry: {figures['telemetry_msgs_per_s']} messages/s in batches of {BATCH}, naive one at a time "
          f"{figures['naive_telemetry_msgs_per_s']}/s, speedup {figures['telemetry_speedup_vs_naive']} "
          "(target >= 10)")
    print(f"telemetry, every message from another device: {figures['telemetry_fleet_msgs_per_s']} messages/s; "
          f"worker CPU per message {figures['telemetry_worker_cpu_us_per_msg']} us (10 devices), "
          f"{figures['telemetry_fleet_worker_cpu_us_per_msg']} us (every message from another device), ratio "
          f"{figures['telemetry_fleet_cpu_ratio']} (target <= 2)")
    print(f"{MANY_DEVICES} devices, one message each, twice: new {figures['devices_10k_new_requests_per_msg']} "
          f"storage requests and {figures['devices_10k_new_cpu_us_per_msg']} us of worker CPU per message, known "
          f"{figures['devices_10k_known_requests_per_msg']} and {figures['devices_10k_known_cpu_us_per_msg']} us")
    print(f"inference: {figures['inference_msgs_per_s']} messages/s in batches of {BATCH}")
    print(f"logs: {figures['log_records_per_1000_messages']} records per 1000 messages of the fleet's shape, root "
          "logger at Information (target <= 5)")
    print(f"simulator, local mode: {figures['simulator_msgs_per_s']} messages/s stored through MQTT QoS 1, "
          f"Mosquitto and the routing stand-in; straight to telemetry_ingest {figures['simulator_direct_msgs_per_s']}"
          f"/s; overhead ratio {figures['simulator_overhead_ratio']} (1: a simulation measures the app)")
    print(f"simulator, --via eventhubs: {figures['eventhubs_producer_msgs_per_s']} messages/s stored through the "
          f"azure-eventhub producer and the AMQP stand-in of Event Hubs; straight to telemetry_ingest "
          f"{figures['eventhubs_direct_msgs_per_s']}/s; overhead ratio {figures['eventhubs_producer_overhead_ratio']}")
    print(f"commands: send_command to an online device {figures['command_median_ms']} ms median, "
          f"p99 {figures['command_p99_ms']} ms; Table insert + QoS 1 publish to PUBACK "
          f"{figures['command_baseline_ms']} ms; ratio {figures['command_overhead_ratio']} (target <= 3)")
    print(f"commands: {figures['commands_per_s']} commands/s with {CONCURRENT_REQUESTS} requests at once "
          f"to {COMMAND_DEVICES} online devices")
    fleet = f"fleet_{FLEET_COMMAND_DEVICES}_seconds"
    print(f"fleet command: {figures[fleet]} s from the request until all {FLEET_COMMAND_DEVICES} commands are sent")
    print(f"life cycle connects: {figures['lifecycle_connects_per_s_no_pending']}/s with nothing pending "
          f"({figures['connect_requests_no_pending']:.0f} storage requests each: registry row read and write, "
          f"connected index row), {figures['lifecycle_connects_per_s_with_pending']}/s with one pending command "
          f"({figures['connect_requests_with_pending']:.0f} requests, and its publish); "
          f"{figures['lifecycle_connect_cpu_us']} us of worker CPU a connect")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
