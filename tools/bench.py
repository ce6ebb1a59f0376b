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

The last line of output is one JSON object of the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tools.services import ROOT

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
    return figures | await lifecycle_rates()


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
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
