"""Building blocks of the stream tests: the hubs' partitions, a device's telemetry,
delivering a range to an ingest function and reading back what it archived and dead-
lettered."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, INFERENCE_CONTAINER, TELEMETRY_CONTAINER
from standins.eventhub_factory import Batch, Partition, routed_body
from standins.invoke import InvocationContext, retry_policy
from tests.support.harness import (
    http_request,
    json_of,
    user_function,
)

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=1)


def hub(stream: str = "telemetry") -> Partition:
    """A partition of a hub of its own: tests share one Azurite."""
    return Partition(f"{stream}-{uuid.uuid4().hex[:8]}", "3", first_sequence=1000, first_enqueued=START,
                     spacing=timedelta(seconds=1))


def telemetry(device: str, n: int, *, start: datetime = START, **metrics: Any) -> bytes:
    """Reading ``n`` of ``device``, stamped ``n`` seconds after ``start`` (give another
    process the same ``start``: START is an hour before this process began)."""
    at = start + timedelta(seconds=n)
    payload = {"timestamp": at.isoformat().replace("+00:00", "Z"), "sequence": n,
               "metrics": metrics or {"cpuTemp": 50 + n % 10, "fps": 30}}
    return routed_body(payload, topic=f"devices/{device}/telemetry", at=at)


def ingest(run: Any, stream: str, batch: Batch, *, retry_count: int = 0) -> None:
    function = f"{stream}_ingest"
    max_retries = int(retry_policy(function)["max_retry_count"])
    run(user_function(function)(batch, InvocationContext(function, retry_count=retry_count,
                                                         max_retry_count=max_retries)))


async def _blobs(container_name: str, prefix: str = "") -> dict[str, bytes]:
    container = await data_store().container(container_name)
    found = {}
    async for blob in container.list_blobs(name_starts_with=prefix or None):
        found[blob.name] = await (await container.download_blob(blob.name)).readall()
    return found


def archived(run: Any, partition: Partition, stream: str = "telemetry") -> list[dict[str, Any]]:
    """Every archive line of ``partition``'s hub."""
    container = TELEMETRY_CONTAINER if stream == "telemetry" else INFERENCE_CONTAINER
    blobs = run(_blobs(container))
    return [orjson.loads(line) for name, data in sorted(blobs.items()) if f"/{partition.hub}-" in name
            for line in data.splitlines()]


def dead_letters(run: Any, partition: Partition, stream: str = "telemetry") -> list[dict[str, Any]]:
    letters = [orjson.loads(data) for data in run(_blobs(DEADLETTER_CONTAINER, f"{stream}/")).values()]
    return [d for d in letters if d.get("eventHub", {}).get("hub") == partition.hub]


def places(run: Any, partition: Partition, stream: str = "telemetry") -> Counter[tuple[int, int | None]]:
    """How often each (sequence number, array position) is archived or dead-lettered."""
    found: Counter[tuple[int, int | None]] = Counter()
    for item in [*archived(run, partition, stream), *dead_letters(run, partition, stream)]:
        origin = item["eventHub"]
        found[(origin["sequenceNumber"], origin.get("position"))] += 1
    return found


def device(run: Any, device_id: str) -> dict[str, Any]:
    response = run(user_function("get_device")(
        http_request("GET", f"devices/{device_id}", route_params={"deviceId": device_id})))
    assert response.status_code == 200, response.get_body()
    return json_of(response)  # type: ignore[no-any-return]
