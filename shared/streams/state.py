"""Latest state per device: the newest value of each telemetry metric, and the
newest inference result per model; what ``get_device`` shows as ``telemetry`` and
``inference``.

Rows in the device's partition of table ``devices`` (beside its registry row):
``telemetry`` and ``inference|{model}``. A batch is coalesced first, so a device
costs one conditional write per batch (see :mod:`shared.platform.rows`). Merging is
order-free: each metric keeps the value with the newest timestamp (a tie goes to
the greater value's JSON, never to the later arrival), and an inference row the
result with the newest (timestamp, inferenceId). So any order of any deliveries
ends in the same rows, and an older message never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from shared.platform.keys import device_key
from shared.platform.rows import merge_row
from shared.platform.storage import DataStore
from shared.platform.storage_names import DEVICES_TABLE
from shared.streams.decode import Accepted
from shared.streams.messages import InferenceMessage, TelemetryMessage

TELEMETRY_ROW = "telemetry"
INFERENCE_ROW_PREFIX = "inference|"
# A device's latest state keeps this many metrics (the newest) and this many
# detections of a result; the archive keeps everything.
MAX_METRICS = 500
MAX_DETECTIONS = 100

# metric -> (timestamp text, value); the texts are of one format (:func:`_stamp`) and sort as times.
Metrics = dict[str, tuple[str, Any]]


def _newer(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    return (a[0], orjson.dumps(a[1])) > (b[0], orjson.dumps(b[1]))


def coalesce_telemetry(accepted: Iterable[Accepted]) -> dict[str, Metrics]:
    """Per device, the newest value of each metric in the batch."""
    devices: dict[str, Metrics] = {}
    for result in accepted:
        message = result.message
        assert isinstance(message, TelemetryMessage)
        stamp = _stamp(message.timestamp)
        metrics = devices.setdefault(result.device_id, {})
        for name, value in message.metrics.items():
            candidate = (stamp, value)
            if name not in metrics or _newer(candidate, metrics[name]):
                metrics[name] = candidate
    return devices


def merge_telemetry(stored: dict[str, Any] | None, incoming: Metrics) -> dict[str, Any] | None:
    """The telemetry row after ``incoming``; None when nothing changes."""
    metrics: Metrics = {k: (t, v) for k, (t, v) in orjson.loads(stored["metrics"]).items()} if stored else {}
    changed = False
    for name, candidate in incoming.items():
        if name not in metrics or _newer(candidate, metrics[name]):
            metrics[name] = candidate
            changed = True
    if not changed:
        return None
    if len(metrics) > MAX_METRICS:
        metrics = dict(sorted(metrics.items(), key=lambda item: item[1][0])[-MAX_METRICS:])
    latest = max(t for t, _ in metrics.values())
    return {"metrics": orjson.dumps({k: [t, v] for k, (t, v) in metrics.items()}).decode(),
            "doc": orjson.dumps({"timestamp": latest, "metrics": {k: v for k, (_, v) in metrics.items()}}).decode()}


def coalesce_inference(accepted: Iterable[Accepted]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (device, model), the newest result in the batch, in its wire form."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for result in accepted:
        message = result.message
        assert isinstance(message, InferenceMessage)
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
    if stored is not None and _order(orjson.loads(stored["doc"])) >= _order(incoming):
        return None
    return {"doc": orjson.dumps(incoming).decode()}


async def write_latest(store: DataStore, telemetry: dict[str, Metrics],
                       inference: dict[tuple[str, str], dict[str, Any]]) -> None:
    """One conditional write per device row that the batch makes newer."""
    writes = [merge_row(store, DEVICES_TABLE, device_key(device), TELEMETRY_ROW,
                        functools.partial(merge_telemetry, incoming=metrics))
              for device, metrics in telemetry.items()]
    writes += [merge_row(store, DEVICES_TABLE, device_key(device), INFERENCE_ROW_PREFIX + model,
                         functools.partial(merge_inference, incoming=state))
               for (device, model), state in inference.items()]
    await asyncio.gather(*writes)


def _stamp(moment: datetime) -> str:
    """RFC 3339 UTC with six fractional digits always: such texts sort as their times do."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
