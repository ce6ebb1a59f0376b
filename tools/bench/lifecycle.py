"""Life cycle events applied per second, against bare Table upserts."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    pass


DEVICES = 50
SESSIONS = 4  # per device: 8 events each, 400 in all

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


def describe(figures: dict[str, Any]) -> list[str]:
    """What ``make bench`` prints of this module's figures."""
    return [
        f"life cycle: {figures['lifecycle_events_per_s']} events/s one at a time, "
        f"{figures['lifecycle_events_per_s_16_concurrent']} events/s 16 at once; bare upserts "
        f"{figures['baseline_upserts_per_s']}/s (ratio {figures['lifecycle_to_baseline_ratio']})",
    ]
