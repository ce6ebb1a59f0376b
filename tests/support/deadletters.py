"""Building blocks of the dead-letter tests: a hub of its own and a device's readings
stamped ahead of their time, delivered to their function; the dead-letter documents
and index rows stored; the HTTP listing and reading of them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, DEADLETTERS_TABLE
from standins.eventhub_factory import Partition, routed_body
from standins.invoke import InvocationContext, retry_policy
from tests.support.harness import http_request, json_of, user_function

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=1)
FUTURE = "further in the future than the allowed clock skew"


def new_device(prefix: str = "dl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def hub(stream: str = "telemetry") -> Partition:
    """A partition of a hub of its own: tests share one Azurite."""
    return Partition(f"{stream}-{uuid.uuid4().hex[:8]}", "2", first_sequence=500, first_enqueued=START,
                     spacing=timedelta(seconds=1))


def reading(device: str, n: int, *, ahead: timedelta = timedelta(0), **extra: Any) -> bytes:
    """A routed telemetry message stamped ``ahead`` of the time its event is enqueued
    (:func:`hub` enqueues event ``n`` at START + n seconds)."""
    at = START + timedelta(seconds=n)
    stamp = (at + ahead).isoformat().replace("+00:00", "Z")
    return routed_body({"timestamp": stamp, "sequence": n, "metrics": {"temp": 20 + n}, **extra},
                       topic=f"devices/{device}/telemetry", at=at)


def ingest(run: Any, batch: Any, *, retry_count: int = 0, stream: str = "telemetry") -> None:
    function = "command_responses" if stream == "command-responses" else f"{stream}_ingest"
    last = int(retry_policy(function)["max_retry_count"])
    run(user_function(function)(batch, InvocationContext(function, retry_count=retry_count, max_retry_count=last)))


async def _documents(prefix: str) -> list[dict[str, Any]]:
    container = await data_store().container(DEADLETTER_CONTAINER)
    return [orjson.loads(await (await container.download_blob(b.name)).readall())
            async for b in container.list_blobs(name_starts_with=prefix)]


def stored(run: Any, log: Partition, stream: str = "telemetry") -> list[dict[str, Any]]:
    """The dead-letter documents of ``log``'s hub, as the blobs hold them."""
    return [d for d in run(_documents(f"{stream}/")) if d.get("eventHub", {}).get("hub") == log.hub]


def index_rows(run: Any, device_id: str) -> list[dict[str, Any]]:
    async def query() -> list[dict[str, Any]]:
        table = await data_store().table(DEADLETTERS_TABLE)
        return [dict(e) async for e in table.query_entities("deviceId eq @d", parameters={"d": device_id})]

    return run(query())  # type: ignore[no-any-return]


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def listed(run: Any, **params: str) -> Any:
    return run(user_function("list_dead_letters")(http_request("GET", "deadletters", params=params)))


def items(run: Any, **params: str) -> list[dict[str, Any]]:
    response = listed(run, **params)
    assert response.status_code == 200, response.get_body()
    return json_of(response)["items"]  # type: ignore[no-any-return]


def get(run: Any, stream: str, dead_letter_id: str) -> Any:
    return run(user_function("get_dead_letter")(http_request(
        "GET", f"deadletters/{stream}/x", route_params={"stream": stream, "deadLetterId": dead_letter_id})))
