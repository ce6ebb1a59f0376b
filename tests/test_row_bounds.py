"""Every table row the stream functions write stays within Azure Tables' limits (a
string property 32 K UTF-16 characters, a binary one 64 KiB, an entity 1 MiB,
integers 32 bits unless typed 64) for any message within the documented bounds, so
no such message fails its batch on every retry. Each bound is tested at its limit
and one past it, where a documented rule decides (README, Limits); the numbers here
are that contract, not read from the code."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest

from shared.platform.storage import data_store
from shared.platform.storage_names import MODEL_STATS_TABLE
from tests.harness import http_request, json_of, user_function
from tests.test_streams import START, device, hub, ingest
from tools.eventhub_factory import routed_body

pytestmark = pytest.mark.usefixtures("app_env")

# The message bounds (README, Stream messages) and what the latest state keeps.
NAME_CHARS, VALUE_CHARS, METRICS, DETECTIONS = 128, 1024, 500, 100
# A metric in the latest state, as JSON ("name":value and its comma), in UTF-8 bytes.
METRIC_BYTES = 1400
# The labels of one statistics row: each label's JSON and 21 bytes (its 19-digit count, colon, comma).
LABEL_BYTES = 704 * 1024 - 1
# A control character takes 6 bytes in JSON (\u0001): the costliest character a device can send.
CONTROL = "\x01"


def at(n: int) -> str:
    return (START + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")


def telemetry(dev: str, n: int, metrics: dict[str, Any]) -> bytes:
    return routed_body({"timestamp": at(n), "metrics": metrics}, topic=f"devices/{dev}/telemetry",
                       at=START + timedelta(seconds=n))


def inference(dev: str, n: int, model: str, labels: list[str], latency: float = 20.0) -> bytes:
    payload = {"timestamp": at(n), "inferenceId": f"{dev}-{n}", "model": {"name": model, "version": "1"},
               "latencyMs": latency, "detections": [{"label": label, "confidence": 0.5} for label in labels]}
    return routed_body(payload, topic=f"devices/{dev}/inference", at=START + timedelta(seconds=n))


def name(i: int, chars: int = NAME_CHARS) -> str:
    """A distinct ASCII name of ``chars`` characters."""
    return f"{i:05d}".ljust(chars, "m")


def costly(i: int) -> str:
    """A distinct name of 128 control characters: 770 bytes of JSON."""
    return chr(1 + i // 31) + chr(1 + i % 31) + CONTROL * (NAME_CHARS - 2)


def big_metrics(first: int, count: int) -> dict[str, str]:
    return {name(i): f"{i:05d}".ljust(VALUE_CHARS, "v") for i in range(first, first + count)}


def model_stats(run: Any, model: str) -> dict[str, Any]:
    """The model's one (version, hour) of statistics."""
    response = run(user_function("get_model_stats")(http_request(
        "GET", f"models/{model}/stats", route_params={"modelName": model},
        params={"since": (START - timedelta(hours=1)).isoformat().replace("+00:00", "Z")})))
    assert response.status_code == 200, response.get_body()
    (item,) = json_of(response)["items"]
    return item  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- model statistics


def test_a_latency_of_2_to_the_31_ms_or_more_is_counted(run: Any) -> None:
    model, dev = f"slow{uuid.uuid4().hex[:6]}", f"cam-{uuid.uuid4().hex[:6]}"
    latencies = [2**31 - 1, 2**31, 2**64 - 1]  # the last the largest integer the JSON parser reads as one
    log = hub("inference")
    log.publish([inference(dev, n, model, ["a"], latency=ms) for n, ms in enumerate(latencies)])
    ingest(run, "inference", log.deliver())
    stats = model_stats(run, model)
    assert (stats["latencyMsMax"], stats["latencyMsMean"]) == (float(2**64 - 1), sum(map(float, latencies)) / 3)
    assert device(run, dev)["inference"][model]["latencyMs"] == float(2**64 - 1)


def test_a_statistics_count_past_2_to_the_31_is_kept(run: Any) -> None:
    model, log = f"busy{uuid.uuid4().hex[:6]}", hub("inference")

    async def seed() -> None:  # the row an hour of 2^31 - 1 results leaves
        table = await data_store().table(MODEL_STATS_TABLE)
        await table.create_entity({
            "PartitionKey": model, "RowKey": f"{START:%Y%m%d%H}|1|{log.hub}|{log.partition_id}",
            "count": 2**31 - 1, "latencyCount": 2**31 - 1, "latencySum": 20.0 * (2**31 - 1), "latencyMax": 20.0,
            "labels": orjson.dumps({"a": 2**31 - 1}).decode(), "applied": "[]"})

    run(seed())
    log.publish([inference("cam-0", n, model, ["a"]) for n in range(2)])
    for one in log.batches(1):
        ingest(run, "inference", one)
    stats = model_stats(run, model)
    assert (stats["count"], stats["labels"], stats["latencyMsMean"]) == (2**31 + 1, {"a": 2**31 + 1}, 20.0)


def test_3000_licence_plates_read_in_an_hour_are_each_counted(run: Any) -> None:
    model, labels = f"ocr{uuid.uuid4().hex[:6]}", [f"AB-{i:04d}-CD" for i in range(3000)]
    log = hub("inference")
    log.publish([inference("cam-0", n, model, labels[i:i + 500]) for n, i in enumerate(range(0, 3000, 500))])
    ingest(run, "inference", log.deliver())
    stats = model_stats(run, model)
    assert stats["labels"] == dict.fromkeys(labels, 1) and "otherLabels" not in stats


def test_statistics_count_labels_up_to_704_kib_a_row_and_the_next_new_ones_as_other_labels_exactly(
        run: Any) -> None:
    model = f"ocr{uuid.uuid4().hex[:6]}"
    # Labels of 105 characters take 128 bytes each: 107 of JSON, 21 for the count.
    fit = LABEL_BYTES // 128
    labels = [name(i, 105) for i in range(fit + 1)]
    log = hub("inference")
    log.publish([inference(f"cam-{n % 3}", n, model, labels[i:i + 500])
                 for n, i in enumerate(range(0, len(labels), 500))]
                + [inference("cam-0", 100, model, [labels[0], labels[-1]])])
    for batch in log.batches(4):
        ingest(run, "inference", batch)
    ingest(run, "inference", log.deliver(range(log.first_sequence + 1, log.next_sequence)))  # a replay
    stats = model_stats(run, model)
    assert (stats["count"], len(stats["labels"]), stats["otherLabels"]) == (len(log.log), fit, 2)
    assert stats["labels"][labels[0]] == 2 and labels[-1] not in stats["labels"]
