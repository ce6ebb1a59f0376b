"""Latest state per device: the newest value of each telemetry metric, and the
newest inference result per model; what ``get_device`` shows as ``telemetry`` and
``inference``.

Rows of table ``lateststate``, one partition per Event Hubs partition
(``{hub}|{partition}``: the routing's partition key is the device id, so a device's
messages, and its rows, stay in one), ``RowKey`` = the device key, ``~|`` (which no
device key holds: keys escape ``~``) and ``telemetry`` or ``inference|{model}``; each
holds the JSON ``get_device`` shows in ``doc`` (split over binary properties,
:func:`shared.platform.rows.split_json`), and the telemetry row lists each metric's
timestamp in ``stamps``, in the order of ``doc``'s metrics. The partition's owner
writes a batch's rows in transactions of up to 100, each on its ETag
(:mod:`shared.platform.partition_rows`): 100 devices, one request. A device new to the
partition first gets a row ``@telemetry`` (or ``@inference``) in its registry
partition naming where its rows are, which ``get_device`` follows: its second query.
Rows written before the state moved here (in the device's partition, ``RowKey``
``telemetry`` or ``inference|{model}``) are never written again; ``get_device``
combines them with these (:func:`combine`), as a write would.

A batch is coalesced first, so a device costs one row per batch. Merging is
order-free: each metric keeps the value with the newest timestamp (a tie goes to the
greater value's JSON, never to the later arrival), and an inference row the result
with the newest (timestamp, inferenceId). So any order of any deliveries ends in the
same rows, and an older message never overwrites a newer one.

Every row is bounded whatever the messages hold: 500 metrics of at most 1 400 bytes
each (:func:`fitted`), 100 detections.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import orjson

from shared.platform.keys import device_key
from shared.platform.partition_rows import merge_rows
from shared.platform.rows import ROW_JSON_BYTES, Merge, joined_json, split_json
from shared.platform.storage import DataStore
from shared.platform.storage_names import LATEST_STATE_TABLE

if TYPE_CHECKING:  # get_device imports this module for combine: pydantic's models stay out of its cold start
    from shared.streams.decode import Accepted
    from shared.streams.messages import InferenceMessage, TelemetryMessage

TELEMETRY_ROW = "telemetry"
INFERENCE_ROW_PREFIX = "inference|"
# A device's latest state keeps this many metrics (the newest) and this many
# detections of a result; the archive keeps everything. 100 detections with labels
# of the costliest 128 characters (control characters, 6 bytes each in JSON) and
# every other field at its longest take under 100 KB, so a result needs no other bound.
MAX_DETECTIONS = 100
MAX_METRICS = 500
# What one metric may take in the telemetry row's JSON ("name":value and a comma), in
# UTF-8 bytes: 500 of them fill 700 000 of the ROW_JSON_BYTES (720 896). A 128-character
# name with a 1 024-character value, the message bounds, takes 1 158 in ASCII, so only
# non-ASCII or control characters can make a value too long (then :func:`fitted` cuts it).
METRIC_BYTES = 1400
ELLIPSIS = "…"
# {"timestamp":"...","metrics":{}} around the metrics.
_DOC_BYTES = 56
assert _DOC_BYTES + MAX_METRICS * METRIC_BYTES <= ROW_JSON_BYTES

# metric -> (timestamp text, value); the texts are of one format (:func:`_stamp`) and sort as times.
Metrics = dict[str, tuple[str, Any]]


def _newer(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    return (a[0], orjson.dumps(a[1])) > (b[0], orjson.dumps(b[1]))


def fitted(name: str, value: Any) -> Any:
    """``value`` as the latest state keeps it: a string whose metric would take more
    than METRIC_BYTES is cut to the longest prefix that fits with an ellipsis after it.
    Decided per metric, so merging stays order-free (a budget shared by the metrics
    would keep different ones depending on which arrived first)."""
    if not isinstance(value, str):
        return value  # a number or a boolean takes at most 24 bytes: with any name, under 800
    room = METRIC_BYTES - len(orjson.dumps(name)) - 2  # the colon and the comma
    if len(orjson.dumps(value)) <= room:
        return value
    low, high = 0, len(value)  # bisect: a longer prefix never takes fewer bytes
    while low < high:
        middle = (low + high + 1) // 2
        if len(orjson.dumps(value[:middle] + ELLIPSIS)) <= room:
            low = middle
        else:
            high = middle - 1
    return value[:low] + ELLIPSIS


def coalesce_telemetry(accepted: Iterable[Accepted]) -> dict[str, Metrics]:
    """Per device, the newest value of each metric in the batch."""
    devices: dict[str, Metrics] = {}
    for result in accepted:
        message = cast("TelemetryMessage", result.message)
        stamp = _stamp(message.timestamp)
        metrics = devices.setdefault(result.device_id, {})
        for name, value in message.metrics.items():
            candidate = (stamp, fitted(name, value))
            if name not in metrics or _newer(candidate, metrics[name]):
                metrics[name] = candidate
    return devices


def merge_telemetry(stored: dict[str, Any] | None, incoming: Metrics) -> dict[str, Any] | None:
    """The telemetry row after ``incoming``; None when nothing changes. Past 500
    metrics the oldest go: the least (timestamp, value JSON, name), so whichever
    arrived first decides nothing."""
    metrics = _metrics(stored) if stored else {}
    changed = False
    for name, candidate in incoming.items():
        if name not in metrics or _newer(candidate, metrics[name]):
            metrics[name] = candidate
            changed = True
    if not changed:
        return None
    if len(metrics) > MAX_METRICS:
        newest = sorted(metrics.items(), key=lambda item: (item[1][0], orjson.dumps(item[1][1]), item[0]))
        metrics = dict(newest[-MAX_METRICS:])
    latest = max(t for t, _ in metrics.values())
    # 500 timestamps of 27 characters: 15 000 characters, within one string property.
    return {"stamps": orjson.dumps([t for t, _ in metrics.values()]).decode(),
            **split_json("doc", {"timestamp": latest, "metrics": {k: v for k, (_, v) in metrics.items()}})}


def _metrics(row: dict[str, Any]) -> Metrics:
    if "stamps" not in row:  # written before the row was split (and values were fitted)
        return {k: (t, fitted(k, v)) for k, (t, v) in orjson.loads(row["metrics"]).items()}
    shown = joined_json(row, "doc")["metrics"]
    return {k: (t, v) for (k, v), t in zip(shown.items(), orjson.loads(row["stamps"]), strict=True)}


def coalesce_inference(accepted: Iterable[Accepted]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (device, model), the newest result in the batch, in its wire form."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for result in accepted:
        message = cast("InferenceMessage", result.message)
        candidate = inference_state(message)
        key = (result.device_id, message.model.name)
        if key not in newest or _order(candidate) > _order(newest[key]):
            newest[key] = candidate
    return newest


def inference_state(message: InferenceMessage) -> dict[str, Any]:
    state: dict[str, Any] = {"version": message.model.version, "timestamp": _stamp(message.timestamp),
                             "inferenceId": message.inference_id}
    if message.latency_ms is not None:
        state["latencyMs"] = message.latency_ms
    if message.frame_id is not None:
        state["frameId"] = message.frame_id
    state["detections"] = [d.model_dump(exclude_none=True, include={"label", "confidence", "bbox"})
                           for d in message.detections[:MAX_DETECTIONS]]
    return state


def _order(state: dict[str, Any]) -> tuple[str, str]:
    return state["timestamp"], state["inferenceId"]


def merge_inference(stored: dict[str, Any] | None, incoming: dict[str, Any]) -> dict[str, Any] | None:
    if stored is not None and _order(joined_json(stored, "doc")) >= _order(incoming):
        return None
    return split_json("doc", incoming)


def state_partition(hub: str, partition: str) -> str:
    return f"{hub}|{partition}"


def state_prefix(device_id: str) -> str:
    """The start of every latest-state row key of a device."""
    return device_key(device_id) + "~|"


async def write_latest(store: DataStore, hub: str, partition: str, telemetry: dict[str, Metrics],
                       inference: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The rows the batch makes newer, in transactions on their ETags, after the
    registry says where new devices' rows are."""
    from shared.lifecycle.registry import DeviceRegistry

    merges: dict[str, Merge] = {state_prefix(d) + TELEMETRY_ROW: functools.partial(merge_telemetry, incoming=m)
                                for d, m in telemetry.items()}
    merges |= {state_prefix(d) + INFERENCE_ROW_PREFIX + model: functools.partial(merge_inference, incoming=state)
               for (d, model), state in inference.items()}
    devices = {state_prefix(d): d for d in telemetry} | {state_prefix(d): d for d, _ in inference}
    pk = state_partition(hub, partition)

    async def point(rows: list[str]) -> None:
        new = {devices[row[:row.index("~|") + 2]] for row in rows}
        await DeviceRegistry(store).point(sorted(new), table=LATEST_STATE_TABLE, partition=pk, prefix=state_prefix)

    await merge_rows(store, LATEST_STATE_TABLE, pk, merges, on_new=point)


def combine(field: str, rows: list[dict[str, Any]]) -> Any:
    """The JSON of a field that a device has in several rows (its messages came
    through two partitions, or a row was written before the state moved to its
    partition's rows), merged as a write merges: order-free, so any order of rows."""
    if field == TELEMETRY_ROW:
        merged = rows[0]
        for row in rows[1:]:
            merged = merge_telemetry(merged, _metrics(row)) or merged
        return joined_json(merged, "doc")
    return max((joined_json(row, "doc") for row in rows), key=_order)


def _stamp(moment: datetime) -> str:
    """RFC 3339 UTC with six fractional digits always: such texts sort as their times do."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
