"""Model statistics: per model, version and UTC hour, how many results, their
latency (mean and max) and their detections by label, across the fleet.

Table ``modelstats``: ``PartitionKey`` = the model name (its characters need no
escaping, see :data:`shared.streams.messages.MODEL_NAME_PATTERN`), ``RowKey`` =
``{yyyyMMddHH}|{version}|{hub}|{partition}``: one row per Event Hubs partition, so
only that partition's owner writes it. Columns ``count``, ``latencyCount`` (64-bit
integers), ``latencySum``, ``latencyMax`` (doubles), ``labels`` (JSON, split over
binary properties by :func:`shared.platform.rows.split_json`), ``otherLabels`` and
``applied``.

A row's labels are bounded (:func:`add_labels`): once they take LABEL_BYTES, the
detections of a label the row does not hold yet are counted in ``otherLabels``.

Counts stay exact under redelivery because they are added per archive blob
(:mod:`shared.streams.archive`), not per delivery: a blob's contribution is
computed from the messages it holds and added only if the row's ``applied`` list
(a short hash of the name of each blob added, the last 64 added) does not name it.
Only a blob the archive's ledger still knows by name (its partition's last 64) is
ever handed over again, and each of those that touched a row is among the row's last
64, so none is added twice. Which labels a full row holds follows the order blobs
are added in: the archive's order, except when a replay fills a gap later.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.platform.errors import InvalidInput
from shared.platform.rows import ROW_JSON_BYTES, joined_json, merge_row, split_json
from shared.platform.storage import DataStore
from shared.platform.storage_names import MODEL_STATS_TABLE
from shared.platform.timestamps import format_timestamp, parse_timestamp

APPLIED_KEPT = 64
DEFAULT_RANGE = timedelta(hours=24)
MAX_RANGE = timedelta(days=31)
# What a row's labels may take: each label's JSON and 21 bytes (a colon, a comma and a
# count of up to 19 digits, an Int64's, so that no count outgrows the row), and the
# braces: 21 800 labels of 10 characters, 5 800 of 100 (an hour of 3 000 licence
# plates of 10 characters takes 99 000 bytes).
LABEL_BYTES = ROW_JSON_BYTES - 1


@dataclass
class Tally:
    """One model version's results in one hour."""

    count: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_max: float | None = None
    labels: dict[str, int] = field(default_factory=dict)
    other_labels: int = 0

    def add_message(self, message: dict[str, Any]) -> None:
        """Add one archived result. Its latency is taken as a double: the archive keeps
        an integer beyond 64 bits as sent, which no Table column holds."""
        self.count += 1
        latency = message.get("latencyMs")
        if latency is not None:
            latency = float(latency)  # an integer of the message may be any size
            self.latency_count += 1
            self.latency_sum += latency
            self.latency_max = latency if self.latency_max is None else max(self.latency_max, latency)
        for detection in message["detections"]:
            self.labels[detection["label"]] = self.labels.get(detection["label"], 0) + 1

    def add(self, other: Tally, *, bounded: bool = False) -> None:
        """Add ``other``; ``bounded``: into a row, whose labels are kept within
        LABEL_BYTES (:func:`add_labels`)."""
        self.count += other.count
        self.latency_count += other.latency_count
        self.latency_sum += other.latency_sum
        if other.latency_max is not None:
            self.latency_max = other.latency_max if self.latency_max is None else max(self.latency_max,
                                                                                      other.latency_max)
        if bounded:
            self.labels, left_out = add_labels(self.labels, other.labels)
            self.other_labels += left_out
        else:
            for label, n in other.labels.items():
                self.labels[label] = self.labels.get(label, 0) + n
        self.other_labels += other.other_labels


def label_bytes(label: str) -> int:
    """What ``label`` and its count take in a row's labels (see LABEL_BYTES)."""
    return len(orjson.dumps(label)) + 21


def add_labels(kept: dict[str, int], new: dict[str, int]) -> tuple[dict[str, int], int]:
    """``kept`` with ``new`` added, a label ``kept`` lacks only while the labels stay
    within LABEL_BYTES (in label order); and the detections of the labels left out."""
    labels, size, left_out = dict(kept), sum(map(label_bytes, kept)), 0
    for label in sorted(new):
        if label not in labels:
            if size + label_bytes(label) > LABEL_BYTES:
                left_out += new[label]
                continue
            size += label_bytes(label)
        labels[label] = labels.get(label, 0) + new[label]
    return labels, left_out


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


def blob_key(name: str) -> str:
    """What a row's ``applied`` list holds of a blob: 16 hex digits of its name's hash
    (a name may be 300 characters; 64 keys of 16 fit any row)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _merge(stored: dict[str, Any] | None, tally: Tally, blob: str) -> dict[str, Any] | None:
    from azure.data.tables import EdmType, EntityProperty

    applied: list[Any] = orjson.loads(stored["applied"]) if stored else []  # ints: first sequences, before
    key = blob_key(blob)
    if key in applied:
        return None  # this blob was added already
    total = _tally(stored) if stored else Tally()
    total.add(tally, bounded=True)
    applied = [*applied, key][-APPLIED_KEPT:]
    row: dict[str, Any] = {"count": EntityProperty(total.count, EdmType.INT64),
                           "latencyCount": EntityProperty(total.latency_count, EdmType.INT64),
                           "latencySum": total.latency_sum, **split_json("labels", total.labels),
                           "applied": orjson.dumps(applied).decode()}
    if total.other_labels:
        row["otherLabels"] = EntityProperty(total.other_labels, EdmType.INT64)
    if total.latency_max is not None:
        row["latencyMax"] = total.latency_max
    return row


def _tally(row: dict[str, Any]) -> Tally:
    return Tally(_int(row["count"]), _int(row["latencyCount"]), float(row["latencySum"]),
                 float(row["latencyMax"]) if row.get("latencyMax") is not None else None,
                 joined_json(row, "labels"), _int(row.get("otherLabels", 0)))


def _int(value: Any) -> int:
    """A count as read: an Int64 comes as an ``EntityProperty``, an Int32 (rows written
    before) as an int."""
    return int(value[0] if isinstance(value, tuple) else value)


async def add_blob(store: DataStore, *, hub: str, partition: str, blob: str,
                   lines: Iterable[dict[str, Any]]) -> None:
    """Add the inference lines of archive blob ``blob`` (its name) to the statistics, once."""
    writes = [
        merge_row(store, MODEL_STATS_TABLE, model, f"{hour}|{version}|{hub}|{partition}",
                  functools.partial(_merge, tally=tally, blob=blob))
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
        if tally.other_labels:
            item["otherLabels"] = tally.other_labels
        if tally.latency_count:
            item["latencyMsMean"] = tally.latency_sum / tally.latency_count
            item["latencyMsMax"] = tally.latency_max
        items.append(item)
    return items
