"""``make bench``: figures for cold start and life cycle throughput.

* ``import_ratio``: time to import ``function_app`` in a fresh interpreter divided
  by the time to import ``azure.functions`` alone (best of several, same run).
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
DEVICES = 50
SESSIONS = 4  # per device: 8 events each, 400 in all


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": os.environ.get("PATH", "")},
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def import_ratio() -> dict[str, float]:
    base, app = [], []
    for _ in range(REPEATS):  # interleaved, so drift hits both alike
        base.append(import_seconds("azure.functions"))
        app.append(import_seconds("function_app"))
    return {"import_azure_functions_ms": round(min(base) * 1000, 1),
            "import_function_app_ms": round(min(app) * 1000, 1),
            "import_ratio": round(min(app) / min(base), 3)}


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

    figures |= run_against_azurite(lifecycle_rates)
    print(f"life cycle: {figures['lifecycle_events_per_s']} events/s one at a time, "
          f"{figures['lifecycle_events_per_s_16_concurrent']} events/s 16 at once; bare upserts "
          f"{figures['baseline_upserts_per_s']}/s (ratio {figures['lifecycle_to_baseline_ratio']})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
