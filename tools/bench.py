"""``make bench``: figures for cold start and life cycle throughput.

* ``import_ratio``: time to import ``function_app`` in a fresh interpreter divided
  by the time to import ``azure.functions`` alone (best of several, same run).
* ``cold_request_ratio``: the first request of a fresh worker, importing
  ``function_app``, indexing it and answering ``get_device`` for a stored device,
  divided by the same work done naively: import ``azure.functions`` and
  ``azure.data.tables.aio``, build a ``TableClient``, one ``get_entity`` of that
  device's row (fresh interpreters against one Azurite, best of several, same run).
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
  ``inference_msgs_per_s``.

The last line of output is one JSON object of the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tools.services import ROOT

if TYPE_CHECKING:
    import azure.functions as func

    from tools.eventhub_factory import Partition
    from tools.storage_requests import Requests

REPEATS = 7
COLD_DEVICE = "cold-start-device"

# Both sides start their clock after asyncio is imported and a loop exists: the
# worker has both before it runs a function. Clients are closed after the clock.
APP_COLD_REQUEST = """
import asyncio, time
loop = asyncio.new_event_loop()
start = time.perf_counter()
import azure.functions as func
import function_app
functions = {{f.get_function_name(): f for f in function_app.app.get_functions()}}
request = func.HttpRequest(method="GET", url="http://localhost/api/devices/{device}", headers={{}}, params={{}},
                           route_params={{"deviceId": "{device}"}}, body=b"")
response = loop.run_until_complete(functions["get_device"].get_user_function()(request))
elapsed = time.perf_counter() - start
assert response.status_code == 200, response.get_body()
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
    from tools import event_factory as ev
    from tools.invoke import user_function

    handler = user_function("client_lifecycle")
    at = datetime(2026, 11, 20, tzinfo=UTC)
    await handler(ev.to_function_event(ev.created_or_updated(COLD_DEVICE, at, attributes={"site": "bench"})))
    await handler(ev.to_function_event(ev.connected(COLD_DEVICE, 1, at + timedelta(minutes=1))))


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
    await store_cold_device()
    figures = await asyncio.to_thread(cold_request_ratio)  # fresh interpreters; this process waits
    return figures | await lifecycle_rates() | await stream_figures()


def documents(prefix: str) -> list[dict[str, Any]]:
    from tools import event_factory as ev

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
    from tools import event_factory as ev
    from tools.invoke import user_function

    handler = user_function("client_lifecycle")
    table = await data_store().table(DEVICES_TABLE)

    async def baseline(docs: list[dict[str, Any]]) -> None:
        for doc in docs:  # one bare upsert per event: what any design pays at least
            await table.upsert_entity({"PartitionKey": doc["id"], "RowKey": "baseline", "doc": json.dumps(doc)})

    async def sequential(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            await handler(ev.to_function_event(doc))

    async def concurrent(docs: list[dict[str, Any]]) -> None:
        # 16 devices at a time, each device's events in order, as Event Grid spreads them.
        docs = sorted(docs, key=lambda d: (d["eventTime"], d["eventType"].endswith("Disconnected"), d["subject"]))
        for i in range(0, len(docs), 16):
            await asyncio.gather(*(handler(ev.to_function_event(d)) for d in docs[i:i + 16]))

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
STREAM_START = datetime(2026, 11, 20, 8, tzinfo=UTC)
SPACING = timedelta(milliseconds=100)  # enqueued times in the partition: 10 devices at 1 message/s
DEVICE_LAG = timedelta(milliseconds=150)  # a device stamps its reading before the broker receives it


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def telemetry_body(device: str, n: int, at: datetime) -> bytes:
    """A routed CloudEvent of one reading (as ``../shared/samples/routed-telemetry.json``)."""
    from tools.eventhub_factory import routed_body

    payload = {"timestamp": _stamp(at - DEVICE_LAG), "sequence": n,
               "metrics": {"cpuTemp": 55 + n % 20, "gpuUtil": round(0.5 + n % 37 / 100, 2), "fps": 29.7,
                           "diskFree": round(12.4 - n % 50 / 100, 2), "door": "closed" if n % 9 else "open"},
               "tags": {"firmware": "4.2.1", "site": "plant-3"}}
    return routed_body(payload, topic=f"devices/{device}/telemetry", at=at, content_type="application/json")


def inference_body(device: str, n: int, at: datetime) -> bytes:
    """A routed CloudEvent of one result with three detections, base64 as an MQTT v3.1.1
    PUBLISH arrives (as ``../shared/samples/routed-inference-base64.json``)."""
    from tools.eventhub_factory import routed_body

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
    from tools.eventhub_factory import Partition

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


async def ingest_batches(stream: str, batches: list[list[func.EventHubEvent]]) -> None:
    """``{stream}_ingest`` over ``batches`` one after another, as the worker calls it
    (with the function's retry policy, so a failure raises instead of dead-lettering)."""
    from tools.invoke import InvocationContext, retry_policy, user_function

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


async def counted_telemetry_requests(batches: int) -> Requests:
    """The storage requests of ``batches`` batches of 100 from 10 devices, through
    ``telemetry_ingest``, of a worker that already owns the partition (warmed by one
    batch: tables known, watermark and device rows read)."""
    from tools.storage_requests import counted_requests

    partition = stream_partition("telemetry", (1 + batches) * BATCH, STREAM_DEVICES)
    warm, *counted = partition.batches(BATCH)
    async with counted_requests() as requests:
        await ingest_batches("telemetry", [warm])
        requests.seen.clear()
        await ingest_batches("telemetry", counted)
    return requests


async def telemetry_requests_per_1000() -> dict[str, float]:
    # The floor is 110 per 1 000: per batch one archive blob and one state write per
    # device (10). The design pays one more per batch, the archive's watermark in
    # ``appmeta``, so 120 is what a batch of 10 devices should cost.
    requests = await counted_telemetry_requests(COUNTED_BATCHES)
    return {"telemetry_requests_per_1000": round(len(requests.seen) * 1000 / (COUNTED_BATCHES * BATCH), 1)}


async def naive_telemetry(events: list[func.EventHubEvent]) -> None:
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
             "inference_msgs_per_s": round(SPEED_MESSAGES / inference_s, 1)}
    rates["telemetry_speedup_vs_naive"] = round(naive_s / ours_s, 2)
    return rates


async def stream_figures() -> dict[str, float]:
    figures = telemetry_cpu_ratio()
    figures |= await telemetry_requests_per_1000()
    return figures | await stream_rates()


def main() -> None:
    figures: dict[str, Any] = {"python": sys.version.split()[0]}
    figures |= import_ratio()
    print(f"import: function_app {figures['import_function_app_ms']} ms, azure.functions "
          f"{figures['import_azure_functions_ms']} ms, ratio {figures['import_ratio']} (target <= 1.6)")
    from tools.invoke import run_against_azurite

    figures |= run_against_azurite(azurite_figures)
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
          f"{BATCH} from {STREAM_DEVICES} devices (target <= 150; floor 110)")
    print(f"telemetry: {figures['telemetry_msgs_per_s']} messages/s in batches of {BATCH}, naive one at a time "
          f"{figures['naive_telemetry_msgs_per_s']}/s, speedup {figures['telemetry_speedup_vs_naive']} "
          "(target >= 10)")
    print(f"telemetry, every message from another device: {figures['telemetry_fleet_msgs_per_s']} messages/s; "
          f"worker CPU per message {figures['telemetry_worker_cpu_us_per_msg']} us (10 devices), "
          f"{figures['telemetry_fleet_worker_cpu_us_per_msg']} us (every message from another device)")
    print(f"inference: {figures['inference_msgs_per_s']} messages/s in batches of {BATCH}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
