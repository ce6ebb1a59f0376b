"""Model statistics: per model, version and UTC hour, how many results, their
latency (mean and max) and their detections by label, across the fleet.

Table ``modelstats``: ``PartitionKey`` = the model name (its characters need no
escaping, see :data:`shared.streams.messages.MODEL_NAME_PATTERN`), ``RowKey`` =
``{yyyyMMddHH}|{version}|{hub}|{partition}``: one row per Event Hubs partition, so
only that partition's owner writes it. Columns ``count``, ``latencyCount``,
``latencySum``, ``latencyMax``, ``labels`` (JSON) and ``applied``.

Counts stay exact under redelivery because they are added per archive blob
(:mod:`shared.streams.archive`), not per delivery: a blob's contribution is
computed from the messages it holds and added only if the row's ``applied`` list
(the first sequence numbers of the blobs already added, the newest 64) does not
name it. A blob older than all 64 was added long ago.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.platform.errors import InvalidInput
from shared.platform.rows import merge_row
from shared.platform.storage import DataStore
from shared.platform.storage_names import MODEL_STATS_TABLE
from shared.platform.timestamps import format_timestamp, parse_timestamp

APPLIED_KEPT = 64
DEFAULT_RANGE = timedelta(hours=24)
MAX_RANGE = timedelta(days=31)


@dataclass
class Tally:
    """One model version's results in one hour."""

    count: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_max: float | None = None
    labels: dict[str, int] = field(default_factory=dict)

    def add_message(self, message: dict[str, Any]) -> None:
        """Add one archived result. Its latency is taken as a double: the archive keeps
        an integer beyond 64 bits as sent, which no Table column holds."""
        self.count += 1
        latency = message.get("latencyMs")
        if latency is not None:
            latency = float(latency)
            self.latency_count += 1
            self.latency_sum += latency
            self.latency_max = latency if self.latency_max is None else max(self.latency_max, latency)
        for detection in message["detections"]:
            self.labels[detection["label"]] = self.labels.get(detection["label"], 0) + 1

    def add(self, other: Tally) -> None:
        self.count += other.count
        self.latency_count += other.latency_count
        self.latency_sum += other.latency_sum
        if other.latency_max is not None:
            self.latency_max = other.latency_max if self.latency_max is None else max(self.latency_max,
                                                                                      other.latency_max)
        for label, n in other.labels.items():
            self.labels[label] = self.labels.get(label, 0) + n


def hour_of(line: dict[str, Any]) -> str:
    return parse_timestamp(line["timestamp"], field="timestamp").strftime("%Y%m%d%H")


def contribution(lines: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], Tally]:
    """What one blob's inference lines add, per (model, version, hour)."""
    tallies: dict[tuple[str, str, str], Tally] = {}
    for line in lines:
        # A blob written before the message moved under "message" (every inference
        # message has "model") may still be read back once, by a retry across a deploy.
        message = line if "model" in line else line["message"]
        key = (message["model"]["name"], message["model"]["version"], hour_of(line))
        tallies.setdefault(key, Tally()).add_message(message)
    return tallies


def _merge(stored: dict[str, Any] | None, tally: Tally, first_sequence: int) -> dict[str, Any] | None:
    applied: list[int] = orjson.loads(stored["applied"]) if stored else []
    if first_sequence in applied or (len(applied) >= APPLIED_KEPT and first_sequence < min(applied)):
        return None  # this blob was added already
    total = _tally(stored) if stored else Tally()
    total.add(tally)
    applied = sorted([*applied, first_sequence])[-APPLIED_KEPT:]
    row: dict[str, Any] = {"count": total.count, "latencyCount": total.latency_count,
                           "latencySum": total.latency_sum, "labels": orjson.dumps(total.labels).decode(),
                           "applied": orjson.dumps(applied).decode()}
    if total.latency_max is not None:
        row["latencyMax"] = total.latency_max
    return row


def _tally(row: dict[str, Any]) -> Tally:
    return Tally(int(row["count"]), int(row["latencyCount"]), float(row["latencySum"]),
                 float(row["latencyMax"]) if row.get("latencyMax") is not None else None,
                 orjson.loads(row["labels"]))


async def add_blob(store: DataStore, *, hub: str, partition: str, first_sequence: int,
                   lines: Iterable[dict[str, Any]]) -> None:
    """Add one archive blob's inference lines to the statistics, once."""
    writes = [
        merge_row(store, MODEL_STATS_TABLE, model, f"{hour}|{version}|{hub}|{partition}",
                  functools.partial(_merge, tally=tally, first_sequence=first_sequence))
        for (model, version, hour), tally in contribution(lines).items()
    ]
    await asyncio.gather(*writes)


def stats_range(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The hours asked for: default the last 24, at most 31 days (400 beyond)."""
    until = until or now
    since = since or until - DEFAULT_RANGE
    if since > until:
        raise InvalidInput("since must not be after until")
    if until - since > MAX_RANGE:
        raise InvalidInput(f"since and until may be at most {MAX_RANGE.days} days apart")
    return since, until


async def model_stats(store: DataStore, model: str, *, since: datetime, until: datetime) -> list[dict[str, Any]] | None:
    """Per version and hour in ``[since, until]``, newest hour last; None when the
    model was never seen."""
    table = await store.table(MODEL_STATS_TABLE)
    low, high = since.astimezone(UTC).strftime("%Y%m%d%H"), until.astimezone(UTC).strftime("%Y%m%d%H")
    totals: dict[tuple[str, str], Tally] = {}
    query = "PartitionKey eq @model and RowKey ge @low and RowKey lt @high"
    async for entity in table.query_entities(query, parameters={"model": model, "low": low, "high": high + "~"}):
        hour, version = entity["RowKey"].split("|")[:2]
        totals.setdefault((hour, version), Tally()).add(_tally(entity))
    if not totals:
        async for _ in table.query_entities("PartitionKey eq @model", parameters={"model": model},
                                            results_per_page=1, select=["RowKey"]):
            return []
        return None
    items = []
    for (hour, version), tally in sorted(totals.items()):
        item: dict[str, Any] = {"version": version,
                                "hour": format_timestamp(datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC)),
                                "count": tally.count, "labels": tally.labels}
        if tally.latency_count:
            item["latencyMsMean"] = tally.latency_sum / tally.latency_count
            item["latencyMsMax"] = tally.latency_max
        items.append(item)
    return items
