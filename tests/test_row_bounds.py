"""Every table row the stream functions write stays within Azure Tables' limits (a
string property 32 K UTF-16 characters, a binary one 64 KiB, an entity 1 MiB,
integers 32 bits unless typed 64) for any message within the documented bounds, so
no such message fails its batch on every retry. Each bound is tested at its limit
and one past it, where a documented rule decides (docs/limits.md); the numbers here
are that contract, not read from the code."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest

from shared.platform.storage import data_store
from shared.platform.storage_names import MODEL_STATS_TABLE
from standins.eventhub_factory import routed_body
from standins.invoke import InvocationContext
from standins.services import Mosquitto
from tests.support.harness import http_request, json_of, user_function
from tests.support.streams import START, device, hub, ingest

pytestmark = pytest.mark.usefixtures("app_env")

# The message bounds (docs/streams.md, Telemetry and inference) and what the latest state keeps.
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


# --------------------------------------------------------------------------- latest telemetry


def test_the_latest_state_keeps_500_metrics_of_128_character_names_and_1024_character_values_whole(
        run: Any) -> None:
    log, dev = hub(), f"wide-{uuid.uuid4().hex[:6]}"
    log.publish([telemetry(dev, n, big_metrics(100 * n, 100)) for n in range(METRICS // 100)])
    ingest(run, "telemetry", log.deliver())
    assert device(run, dev)["telemetry"]["metrics"] == big_metrics(0, METRICS)


def test_past_500_metrics_the_latest_state_drops_the_oldest_a_tie_going_to_the_lesser_value_whatever_the_order(
        run: Any) -> None:
    # Message 1 holds 100 metrics and message 0 one more, sent at the same time with a
    # value less than theirs: of the 501 metrics, it is the one dropped.
    oldest = {name(999): "".ljust(VALUE_CHARS, "0")}
    shown = []
    for order in ((0, 1, 2, 3, 4, 5), (5, 4, 3, 2, 1, 0), (1, 0, 2, 3, 4, 5)):
        log, dev = hub(), f"wide-{uuid.uuid4().hex[:6]}"
        log.publish([telemetry(dev, 1, oldest) if n == 0 else telemetry(dev, n, big_metrics(100 * n, 100))
                     for n in order])
        for one in log.batches(1):
            ingest(run, "telemetry", one)
        shown.append(device(run, dev)["telemetry"])
    assert shown[0]["metrics"] == big_metrics(100, METRICS)
    assert shown[0] == shown[1] == shown[2]


def test_a_metric_takes_at_most_1400_bytes_and_a_longer_string_value_is_cut_to_fit_ending_in_an_ellipsis(
        run: Any) -> None:
    log, dev = hub(), f"cut-{uuid.uuid4().hex[:6]}"
    # "a":"..." and its comma: 3 + 1 + 2 + the value's UTF-8 bytes + 1; é takes 2 bytes, … 3.
    fits = "x" + "é" * ((METRIC_BYTES - 7 - 1) // 2)
    over = "é" * (len(fits))  # one byte more
    assert (len(orjson.dumps({"a": fits})) - 1, len(orjson.dumps({"a": over})) - 1) == (METRIC_BYTES,
                                                                                       METRIC_BYTES + 1)
    log.publish([telemetry(dev, 1, {"a": fits, "b": over})])
    ingest(run, "telemetry", log.deliver())
    metrics = device(run, dev)["telemetry"]["metrics"]
    assert metrics == {"a": fits, "b": "é" * (len(over) - 2) + "…"}
    assert len(orjson.dumps({"b": metrics["b"]})) - 1 == METRIC_BYTES


def test_500_metrics_of_the_costliest_characters_keep_their_names_and_values_cut_to_1400_bytes(
        run: Any) -> None:
    log, dev = hub(), f"ctl-{uuid.uuid4().hex[:6]}"
    names = [costly(i) for i in range(METRICS)]
    per_message = 35  # 35 metrics of 6.9 KB of JSON: a body under 256 KiB
    log.publish([telemetry(dev, n, dict.fromkeys(names[i:i + per_message], "\x02" * VALUE_CHARS))
                 for n, i in enumerate(range(0, METRICS, per_message))])
    ingest(run, "telemetry", log.deliver())
    metrics = device(run, dev)["telemetry"]["metrics"]
    assert sorted(metrics) == sorted(names)
    for key, value in metrics.items():
        assert value.endswith("…") and set(value[:-1]) == {"\x02"}
        assert METRIC_BYTES - 6 < len(orjson.dumps({key: value})) - 1 <= METRIC_BYTES


def test_the_rows_a_partitions_owner_remembers_take_at_most_64_mib_then_it_reads_them_one_by_one(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.platform import partition_rows

    assert partition_rows.MAX_CACHE_BYTES == 64 * 1024 * 1024
    monkeypatch.setattr(partition_rows, "MAX_CACHE_BYTES", 1_500_000)  # a row of 500 wide metrics, not three
    devices = [f"wide-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    log = hub()
    for n in range(METRICS // 100):  # batch by batch: the later ones merge into rows the cache let go
        ingest(run, "telemetry", log.deliver(log.publish([telemetry(dev, n, big_metrics(100 * n, 100))
                                                          for dev in devices])))
        caches = list(data_store().cache(partition_rows.PartitionMemory).partitions.values())
        assert caches and all(c.size <= 1_500_000 for c in caches)
    assert [device(run, dev)["telemetry"]["metrics"] for dev in devices] == [big_metrics(0, METRICS)] * 3


# --------------------------------------------------------------------------- latest inference


def test_the_latest_inference_keeps_100_detections_of_the_costliest_128_character_labels_and_drops_the_101st(
        run: Any) -> None:
    log, dev, model = hub("inference"), f"cam-{uuid.uuid4().hex[:6]}", f"m{uuid.uuid4().hex[:6]}"
    labels = [costly(i) for i in range(DETECTIONS + 1)]
    log.publish([inference(dev, 1, model, labels)])
    ingest(run, "inference", log.deliver())
    assert [d["label"] for d in device(run, dev)["inference"][model]["detections"]] == labels[:DETECTIONS]


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


# --------------------------------------------------------------------------- commands


def test_a_command_row_keeps_a_250_kb_payload_and_answer_and_an_answer_past_704_kib_is_dead_lettered(
        run: Any, mosquitto: Mosquitto) -> None:
    from tests.support.commands import command, dead_letter_reasons, online, send

    device = online(run, mosquitto, "silent")
    try:
        response = send(run, device.device_id, {"name": "x", "payload": {"blob": "p" * 250_000}})
        assert response.status_code == 202, response.get_body()
        cid = json_of(response)["commandId"]
        topic = f"devices/{device.device_id}/commands/{cid}/response"
        answers = hub("command-responses")
        answers.publish([
            routed_body({"commandId": cid, "status": "succeeded", "result": "r" * 250_000}, topic=topic, at=START),
            # kept as the late response, it would make the row 750 KB
            routed_body({"commandId": cid, "status": "failed", "error": "e" * 250_000}, topic=topic, at=START),
        ])
        run(user_function("command_responses")(answers.deliver(), InvocationContext("command_responses")))
        done = command(run, device.device_id, cid)
        assert (done["status"], len(done["result"]), done.get("lateResponse")) == ("succeeded", 250_000, None)
        (reason,) = dead_letter_reasons(run, answers.hub)
        assert "704 KiB" in reason
    finally:
        device.disconnect()


def test_a_fleet_job_and_a_broadcast_keep_a_250_kb_payload(run: Any, mosquitto: Mosquitto) -> None:
    from tests.support.commands import online

    payload, device = {"blob": "p" * 250_000}, online(run, mosquitto, "silent")
    try:
        response = run(user_function("send_fleet_command")(http_request(
            "POST", "commands", body={"name": "x", "payload": payload, "target": {"deviceIds": [device.device_id]}})))
        assert response.status_code == 202, response.get_body()
        assert json_of(response)["counts"] == {"sent": 1}
        notice = f"b{uuid.uuid4().hex[:6]}"
        response = run(user_function("send_broadcast")(http_request(
            "POST", "broadcasts", body={"name": notice, "payload": payload})))
        assert response.status_code == 202, response.get_body()
        listed = json_of(run(user_function("list_broadcasts")(http_request("GET", "broadcasts",
                                                                           params={"limit": "1"}))))["items"]
        assert [(b["name"], b["payload"]) for b in listed] == [(notice, payload)]
    finally:
        device.disconnect()


# --------------------------------------------------------------------------- rows written before


def test_latest_state_rows_written_before_the_split_are_read_and_extended(run: Any) -> None:
    """(Passes before the change too: it guards the upgrade of a deployed app.)"""
    from shared.platform.keys import device_key
    from shared.platform.storage_names import DEVICES_TABLE

    dev, model = f"old-{uuid.uuid4().hex[:6]}", f"m{uuid.uuid4().hex[:6]}"
    result = {"version": "1", "timestamp": f"{at(5)[:-1]}.000000Z", "inferenceId": "old", "detections": []}

    async def seed() -> None:  # the rows as the previous version wrote them: JSON in string properties
        table = await data_store().table(DEVICES_TABLE)
        await table.create_entity({"PartitionKey": device_key(dev), "RowKey": "telemetry",
                                   "metrics": orjson.dumps({"kept": [f"{at(5)[:-1]}.000000Z", 5]}).decode(),
                                   "doc": orjson.dumps({"timestamp": at(5), "metrics": {"kept": 5}}).decode()})
        await table.create_entity({"PartitionKey": device_key(dev), "RowKey": f"inference|{model}",
                                   "doc": orjson.dumps(result).decode()})

    run(seed())
    log = hub()
    log.publish([telemetry(dev, 1, {"kept": 1, "new": 1})])
    ingest(run, "telemetry", log.deliver())
    state = device(run, dev)
    assert state["telemetry"]["metrics"] == {"kept": 5, "new": 1}
    assert state["inference"][model]["inferenceId"] == "old"
    log = hub("inference")
    log.publish([inference(dev, 6, model, ["a"])])
    ingest(run, "inference", log.deliver())
    assert device(run, dev)["inference"][model]["inferenceId"] == f"{dev}-6"


# --------------------------------------------------------------------------- transactions


@contextlib.contextmanager
def transaction_bodies(run: Any) -> Iterator[list[bytes]]:
    """The bodies of the latest state's transactions (``$batch``) sent in the block."""
    from shared.platform.storage import CLIENT_OPTIONS, reset_data_store

    bodies: list[bytes] = []

    def hook(request: Any) -> None:
        http = request.http_request
        if http.url.endswith("/$batch"):
            bodies.append(bytes(getattr(http, "content", None) or http.body))

    run(reset_data_store())
    CLIENT_OPTIONS.update(raw_request_hook=hook)
    try:
        yield bodies
    finally:
        CLIENT_OPTIONS.clear()
        run(reset_data_store())


def operations(body: bytes) -> int:
    return body.count(b"Content-Type: application/http")


def test_a_batch_of_the_widest_rows_goes_out_in_transactions_under_4_mib_each(run: Any) -> None:
    """Six rows of 500 of the widest metrics take about 940 KB each on the wire: a
    transaction holds four at most (Azure refuses a payload of 4 MiB or more)."""
    devices = [f"wide-tx-{uuid.uuid4().hex[:6]}" for _ in range(6)]
    log = hub()
    log.publish([telemetry(dev, n, big_metrics(100 * n, 100)) for n in range(METRICS // 100) for dev in devices])
    with transaction_bodies(run) as bodies:
        ingest(run, "telemetry", log.deliver())
    assert len(bodies) >= 2 and sum(operations(b) for b in bodies) == 6
    assert all(len(b) < 4 * 1024 * 1024 for b in bodies), [len(b) for b in bodies]
    assert [device(run, dev)["telemetry"]["metrics"] for dev in devices] == [big_metrics(0, METRICS)] * 6


@pytest.mark.parametrize("devices, transactions", [(100, [100]), (101, [100, 1])])
def test_a_transaction_holds_at_most_100_rows(run: Any, devices: int, transactions: list[int]) -> None:
    names = [f"many-{uuid.uuid4().hex[:6]}-{n}" for n in range(devices)]
    log = hub()
    log.publish([telemetry(dev, 1, {"seen": 1}) for dev in names])
    with transaction_bodies(run) as bodies:
        ingest(run, "telemetry", log.deliver())
    assert sorted((operations(b) for b in bodies), reverse=True) == transactions
    assert device(run, names[-1])["telemetry"]["metrics"] == {"seen": 1}


def test_the_longest_device_key_and_model_name_fit_the_latest_states_keys(run: Any) -> None:
    """128 characters that each escape to three (``~25``, ``~27``, ``~7E``) and a model
    name of 64: the row key takes 384 + 12 + 64 characters, under Azure's 1 KiB."""
    from shared.platform.keys import device_key

    dev = ("%'~" * 43)[:127] + uuid.uuid4().hex[:1]
    model = "m" + uuid.uuid4().hex[:8] + "x" * 55
    assert len(dev) == 128 and len(device_key(dev)) >= 381 and len(model) == 64
    for stream, body in (("telemetry", telemetry(dev, 1, {"t": 1})), ("inference", inference(dev, 1, model, ["a"]))):
        log = hub(stream)
        log.publish([body])
        ingest(run, stream, log.deliver())
    shown = device(run, dev)
    assert shown["telemetry"]["metrics"] == {"t": 1} and shown["inference"][model]["inferenceId"] == f"{dev}-1"


def test_the_rows_merge_row_remembers_take_at_most_256_mib_then_it_starts_afresh(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their own memory (model statistics use it): no other cache is let go with it."""
    from shared.platform import rows
    from shared.platform.partition_rows import PartitionMemory

    assert rows.MEMO_BYTES == 256 * 1024 * 1024
    monkeypatch.setattr(rows, "MEMO_BYTES", 1_000)  # two rows of 400 bytes, not three
    store, table = data_store(), f"memo{uuid.uuid4().hex[:8]}"
    others = store.cache(PartitionMemory)
    for n in range(3):
        assert run(rows.merge_row(store, table, "p", f"r{n}", lambda _: {"doc": "x" * 400}))
    memory = store.cache(rows.RowMemory)
    assert 0 < memory.used <= 1_000 and len(memory.rows) < 3
    assert store.cache(PartitionMemory) is others, "another owner's cache stays"
    assert run(rows.merge_row(store, table, "p", "r0", lambda row: None if row == {"doc": "x" * 400} else {})) is False
