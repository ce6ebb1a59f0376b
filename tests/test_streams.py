"""telemetry_ingest and inference_ingest: every message that reaches Event Hubs ends
in exactly one place, the archive or the dead letters, however often and in whatever
batches the host delivers it; latest state and model statistics stay exact."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.platform.storage import data_store
from standins.eventhub_factory import Partition, routed_body
from standins.invoke import FunctionFailed, InvocationContext, retry_policy
from tests.support.harness import (
    changed_settings,
    failing_requests,
    http_request,
    json_of,
    storage_requests,
    user_function,
)
from tests.support.stream_corpus import CORPUS
from tests.support.streams import NOW, START, archived, dead_letters, device, hub, ingest, places, telemetry

pytestmark = pytest.mark.usefixtures("app_env")


def inference(device: str, n: int, *, model: str = "yolo", version: str = "8.1", latency: float = 20.0,
              labels: tuple[str, ...] = ("person",)) -> bytes:
    at = START + timedelta(seconds=n)
    payload = {"timestamp": at.isoformat().replace("+00:00", "Z"), "inferenceId": f"{device}-{n}",
               "model": {"name": model, "version": version}, "latencyMs": latency,
               "detections": [{"label": label, "confidence": 0.5} for label in labels]}
    return routed_body(payload, topic=f"devices/{device}/inference", at=at)


def test_accepted_messages_are_archived_with_their_origin_and_bad_ones_dead_lettered(run: Any) -> None:
    log = hub()
    dev = f"cam-{uuid.uuid4().hex[:6]}"
    log.publish([telemetry(dev, 1), b"{not json", telemetry(dev, 2),
                 routed_body({"timestamp": NOW.isoformat(), "deviceId": "someone-else", "metrics": {"x": 1}},
                             topic=f"devices/{dev}/telemetry", at=NOW)])
    ingest(run, "telemetry", log.deliver())
    lines = archived(run, log)
    assert [(line["deviceId"], line["message"]["sequence"], line["eventHub"]["sequenceNumber"]) for line in lines] == [
        (dev, 1, 1000), (dev, 2, 1002)]
    origin = lines[0]["eventHub"]
    assert (origin["hub"], origin["partitionId"], origin["offset"]) == (log.hub, "3", str(log.log[0].offset))
    letters = {d["eventHub"]["sequenceNumber"]: d for d in dead_letters(run, log)}
    assert set(letters) == {1001, 1003}
    assert letters[1001]["body"] == "{not json" and "JSON" in letters[1001]["reason"]
    assert "spoofed" in letters[1003]["reason"]
    assert letters[1003]["errors"] and letters[1003]["stream"] == "telemetry"


def test_a_redelivered_batch_with_other_boundaries_archives_nothing_twice(run: Any) -> None:
    log = hub()
    log.publish([telemetry(f"d{n % 3}", n) for n in range(30)] + [b"null"] * 3)
    for batch in log.batches(10):
        ingest(run, "telemetry", batch)
    for start, stop in ((1003, 1017), (1000, 1033), (1025, 1031)):  # overlapping replays
        ingest(run, "telemetry", log.deliver(range(start, stop)))
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(1000, 1033)})


def test_a_replay_that_starts_inside_an_archived_blob_goes_on_after_it(run: Any) -> None:
    log = hub()
    log.publish([telemetry("d", n) for n in range(20)])
    ingest(run, "telemetry", log.deliver(range(1000, 1020)))
    run(data_store().close())  # a new process: no watermark in memory
    ingest(run, "telemetry", log.deliver(range(1005, 1020)))
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(1000, 1020)})


def test_a_failure_fails_the_invocation_and_the_retry_completes_the_batch_exactly_once(run: Any) -> None:
    log = hub()
    log.publish([telemetry(f"d{n % 4}", n) for n in range(40)])
    with failing_requests(run, "POST", "/$batch", times=1), pytest.raises(FunctionFailed, match="Error"):
        ingest(run, "telemetry", log.deliver(range(1000, 1020)))  # archived, then the latest state fails
    ingest(run, "telemetry", log.deliver(range(1000, 1040)), retry_count=1)  # the host retries, larger
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(1000, 1040)})
    assert device(run, "d3")["telemetry"]["metrics"]["cpuTemp"] == 50 + 39 % 10


def test_the_last_retry_dead_letters_the_batch_instead_of_failing(run: Any) -> None:
    log = hub()
    log.publish([telemetry("d", n) for n in range(5)])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with failing_requests(run, "PUT", "/devstoreaccount1/telemetry/", times=10):
        ingest(run, "telemetry", log.deliver(), retry_count=last)  # no exception: the partition moves on
    letters = dead_letters(run, log)
    assert sorted(d["eventHub"]["sequenceNumber"] for d in letters) == list(range(1000, 1005))
    assert all("after the last retry" in d["reason"] for d in letters)
    assert orjson.loads(letters[0]["body"])["type"] == "MQTT.EventPublished", "the original bytes"


def test_both_functions_declare_an_exponential_retry_policy() -> None:
    for name in ("telemetry_ingest", "inference_ingest"):
        policy = retry_policy(name)
        assert policy["strategy"] == "exponential_backoff" and int(policy["max_retry_count"]) >= 1


def test_latest_state_keeps_the_newest_value_of_each_metric_whatever_the_order(run: Any) -> None:
    log = hub()
    dev = f"sensor-{uuid.uuid4().hex[:6]}"
    log.publish([telemetry(dev, 9, temp=9, battery=90), telemetry(dev, 3, temp=3, humidity=33),
                 telemetry(dev, 5, temp=5)])
    ingest(run, "telemetry", log.deliver(range(1000, 1001)))
    ingest(run, "telemetry", log.deliver(range(1001, 1003)))  # older messages later: newer values stay
    state = device(run, dev)["telemetry"]
    assert state["metrics"] == {"temp": 9, "battery": 90, "humidity": 33}
    assert state["timestamp"].startswith((START + timedelta(seconds=9)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert device(run, dev)["state"] == "Unknown", "telemetry before any life cycle event still shows"


def test_concurrent_invocations_of_two_partitions_never_lose_a_newer_value(run: Any) -> None:
    dev = f"shared-{uuid.uuid4().hex[:6]}"
    one, two = hub(), hub()
    one.publish([telemetry(dev, n, a=n) for n in range(0, 20, 2)])
    two.publish([telemetry(dev, n, b=n) for n in range(1, 20, 2)])

    async def both() -> None:
        handler = user_function("telemetry_ingest")
        await asyncio.gather(*(handler(p.deliver(), InvocationContext("telemetry_ingest"))
                               for p in (one, two)))

    run(both())
    assert device(run, dev)["telemetry"]["metrics"] == {"a": 18, "b": 19}


def test_one_batch_costs_one_archive_write_the_watermark_and_one_state_transaction_for_its_devices(
        run: Any) -> None:
    log = hub()
    log.publish([telemetry(f"cost-{n % 10}", n) for n in range(300)])
    first, second, third = log.batches(100)
    with storage_requests(run) as requests:
        ingest(run, "telemetry", first)  # a new process: tables, the watermark and the partition's rows are read
        requests.seen.clear()
        ingest(run, "telemetry", second)
        ingest(run, "telemetry", third)
    # Per batch: the blob, the watermark, and one transaction of its 10 devices' rows.
    assert sorted(Counter(method for method, _ in requests.seen).items()) == [("POST", 2), ("PUT", 2 * (1 + 1))], \
        requests.seen


def test_inference_statistics_are_exact_under_redelivery(run: Any) -> None:
    log = hub("inference")
    model = f"m{uuid.uuid4().hex[:6]}"
    bodies = [inference(f"cam-{n % 3}", n, model=model, version="1.0" if n < 10 else "2.0", latency=float(n),
                        labels=("person", "car") if n % 2 else ("person",)) for n in range(20)]
    log.publish(bodies)
    for batch in log.batches(7):
        ingest(run, "inference", batch)
    ingest(run, "inference", log.deliver(range(1003, 1018)))  # a replay with other boundaries
    run(data_store().close())
    ingest(run, "inference", log.deliver(range(1010, 1020)))  # and one from a new process
    response = run(user_function("get_model_stats")(http_request(
        "GET", f"models/{model}/stats", route_params={"modelName": model},
        params={"since": (START - timedelta(hours=1)).isoformat().replace("+00:00", "Z")})))
    assert response.status_code == 200, response.get_body()
    items = {item["version"]: item for item in json_of(response)["items"]}
    assert (items["1.0"]["count"], items["2.0"]["count"]) == (10, 10)
    assert items["1.0"]["labels"] == {"person": 10, "car": 5}
    assert (items["1.0"]["latencyMsMean"], items["1.0"]["latencyMsMax"]) == (4.5, 9.0)
    latest = device(run, "cam-1")["inference"][model]
    assert (latest["version"], latest["inferenceId"]) == ("2.0", "cam-1-19")


def test_model_stats_of_a_model_never_seen_is_404_and_a_bad_range_400(run: Any) -> None:
    def stats(model: str, **params: str) -> Any:
        return run(user_function("get_model_stats")(http_request(
            "GET", f"models/{model}/stats", route_params={"modelName": model}, params=params)))

    assert stats("never-seen").status_code == 404
    assert stats("bad/name").status_code == 400
    far = (NOW - timedelta(days=40)).isoformat().replace("+00:00", "Z")
    assert "31 days" in json_of(stats("never-seen", since=far))["detail"]


def test_an_array_body_archives_its_good_messages_and_dead_letters_each_bad_one(run: Any) -> None:
    log = hub()
    good = {"deviceId": "plc-1", "timestamp": START.isoformat(), "metrics": {"x": 1}}
    log.publish([orjson.dumps([good, {"deviceId": "plc-1", "metrics": {}}, good | {"metrics": {"x": 2}}])])
    ingest(run, "telemetry", log.deliver())
    assert places(run, log) == Counter({(1000, 0): 1, (1000, 1): 1, (1000, 2): 1})
    [letter] = dead_letters(run, log)
    assert orjson.loads(letter["body"]) == {"deviceId": "plc-1", "metrics": {}}


def test_the_bad_input_corpus_ends_in_dead_letters_and_spoils_no_good_message(run: Any) -> None:
    log = hub()
    bad = [body for _, stream, body, _ in CORPUS if stream == "telemetry"]
    assert len(bad) >= 30
    log.publish([telemetry("good", 0), *bad, telemetry("good", 1)])
    ingest(run, "telemetry", log.deliver())
    last = 1000 + len(bad) + 1
    assert set(places(run, log).values()) == {1}, "each message in one place, once"
    good = {(line["eventHub"]["sequenceNumber"], line["deviceId"]) for line in archived(run, log)}
    assert {(1000, "good"), (last, "good")} <= good
    letters = dead_letters(run, log)
    assert {d["eventHub"]["sequenceNumber"] for d in letters} == set(range(1001, last)), "every bad body"
    assert all(d["reason"] and len(d["reason"]) < 400 for d in letters)
    for letter in letters:  # the original bytes (of the body, or of the bad element of an array)
        original = letter["body"].encode() if "body" in letter else base64.b64decode(letter["bodyBase64"])
        body = bad[letter["eventHub"]["sequenceNumber"] - 1001]
        position = letter["eventHub"].get("position")
        assert original == (body if position is None else orjson.dumps(orjson.loads(body)[position]))


def test_an_unexpected_error_about_one_message_dead_letters_it_as_internal(run: Any, monkeypatch: Any) -> None:
    from shared.streams import batch

    real = batch.decode  # type: ignore[attr-defined]  # the name the batch module calls

    def buggy(stream: Any, body: bytes, *args: Any, **kwargs: Any) -> Any:
        if b"trip" in body:
            raise ZeroDivisionError("a bug")
        return real(stream, body, *args, **kwargs)

    monkeypatch.setattr(batch, "decode", buggy)
    log = hub()
    log.publish([telemetry("ok", 1), telemetry("ok", 2, trip=1), telemetry("ok", 3)])
    ingest(run, "telemetry", log.deliver())
    assert [line["message"]["sequence"] for line in archived(run, log)] == [1, 3]
    [letter] = dead_letters(run, log)
    assert letter["reason"] == "internal: decoding failed (ZeroDivisionError)"


def test_storage_stopping_mid_batch_fails_it_and_a_redelivery_stores_everything_once(run: Any) -> None:
    """Azurite itself is stopped in the middle of a batch, then started again."""
    from shared.platform.settings import reset_settings
    from shared.platform.storage import reset_data_store
    from standins.services import run_restartable_azurite
    from tests.support.harness import _hook, changed_settings

    log = hub()
    log.publish([telemetry(f"outage-{n % 5}", n) for n in range(60)])
    with run_restartable_azurite() as azurite:
        address = azurite.ports
        connection = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
                      f"{__import__('standins.services', fromlist=['AZURITE_KEY']).AZURITE_KEY};"
                      f"BlobEndpoint=http://127.0.0.1:{address.blob_port}/devstoreaccount1;"
                      f"TableEndpoint=http://127.0.0.1:{address.table_port}/devstoreaccount1;")
        with changed_settings(run, {"DataStorage": connection}):
            ingest(run, "telemetry", log.deliver(range(1000, 1020)))
            requests: list[str] = []

            def stop_after_the_blob(method: str, path: str) -> None:
                requests.append(f"{method} {path}")
                if method == "POST" and "/$batch" in path and len(requests) > 3:
                    azurite.stop()  # the archive blob is written; the latest state is not

            with _hook(run, stop_after_the_blob, retry_total=0), pytest.raises(FunctionFailed, match="Error"):
                ingest(run, "telemetry", log.deliver(range(1020, 1040)))
            azurite.start()
            run(reset_data_store())
            reset_settings()
            ingest(run, "telemetry", log.deliver(range(1020, 1040)), retry_count=1)  # the same boundaries
            ingest(run, "telemetry", log.deliver(range(1010, 1060)), retry_count=2)  # and other ones
            lines = archived(run, log)
            state = device(run, "outage-4")["telemetry"]
    assert Counter(line["eventHub"]["sequenceNumber"] for line in lines) == Counter(range(1000, 1060))
    assert state["metrics"]["cpuTemp"] == 50 + 59 % 10


def test_a_storm_raises_one_alert_stored_and_forwarded_at_least_once(run: Any) -> None:
    from shared.alerts import forward
    from shared.alerts.settings import AlertSettings
    from shared.platform.settings import load
    from tests.support.producer_double import ProducerDouble

    producer = ProducerDouble(fail_on=1)  # the first send is lost
    settings = load(AlertSettings, {"ALERTS_HUB_NAME": "alerts", "EventHubConnection": "Endpoint=sb://x/;"
                                    "SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"})
    forward._hub = forward.AlertHub(settings, lambda _: (producer, None))
    try:
        dev = f"hot-{uuid.uuid4().hex[:6]}"
        log = hub()
        log.publish([telemetry(dev, n, cpuTemp=90 + n % 3) for n in range(12)])
        with pytest.raises(FunctionFailed, match="connection lost"):
            ingest(run, "telemetry", log.deliver(range(1000, 1006)))  # stored, then the send fails
        for batch in log.batches(4):
            ingest(run, "telemetry", batch, retry_count=1)
        ingest(run, "telemetry", log.deliver())  # a replay
    finally:
        forward._hub = None
    response = run(user_function("list_alerts")(http_request("GET", "alerts", params={"deviceId": dev})))
    [stored] = json_of(response)["items"]
    assert (stored["rule"], stored["stream"], stored["severity"]) == ("cpuTempHigh", "telemetry", "warning")
    sent = [orjson.loads(event.body_as_str()) for _, event in producer.events()]
    assert [a["alertId"] for a in sent] == [stored["alertId"]], "sent once by this process, after the failure"


# --- property: any bodies, any batches, any replays ---------------------------------

def _body(kind: int, n: int) -> bytes:
    if kind == 0:
        return telemetry(f"p{n % 4}", n)
    if kind == 1:
        good = {"deviceId": f"p{n % 4}", "timestamp": START.isoformat(), "metrics": {"n": n}}
        return orjson.dumps([good, {"deviceId": "p", "metrics": "no"}, good])
    return CORPUS[(kind * 7 + n) % len(CORPUS)][2]


@given(kinds=st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=25), data=st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bodies_in_any_batches_end_in_exactly_one_place_and_replays_change_nothing(
        run: Any, kinds: list[int], data: st.DataObject) -> None:
    log = hub()
    log.publish([_body(kind, n) for n, kind in enumerate(kinds)])
    end = log.next_sequence
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1001, max_value=max(1001, end - 1)), max_size=5)))
    bounds = [1000, *[c for c in cuts if c < end], end]
    for start, stop in itertools.pairwise(bounds):
        ingest(run, "telemetry", log.deliver(range(start, stop)))
    found = places(run, log)
    assert set(found.values()) == {1}, "no message in two places"
    assert {seq for seq, _ in found} == set(range(1000, end)), "every event somewhere"
    for n, kind in enumerate(kinds):
        if kind == 1:  # a readable array: each element in its own place
            assert {p for seq, p in found if seq == 1000 + n} == {0, 1, 2}
    before = (archived(run, log), sorted(orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in
                                         (dict(d, receivedAt=None) for d in dead_letters(run, log))))
    replay_start = data.draw(st.integers(min_value=1000, max_value=end - 1))
    replay_stop = data.draw(st.integers(min_value=replay_start + 1, max_value=end))
    ingest(run, "telemetry", log.deliver(range(replay_start, replay_stop)))
    after = (archived(run, log), sorted(orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in
                                        (dict(d, receivedAt=None) for d in dead_letters(run, log))))
    assert after == before, "a replay changes nothing"


def test_a_last_retry_that_fails_after_the_archive_dead_letters_nothing_the_archive_holds(run: Any) -> None:
    log = hub()
    log.publish([telemetry("late", n) for n in range(4)])
    ingest(run, "telemetry", log.deliver())  # archived, latest state written
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with failing_requests(run, "GET", "/lateststate(", times=10) as failed:  # a new process: it loads the rows
        ingest(run, "telemetry", log.deliver(), retry_count=last)  # ... and fails there, after the archive
    assert failed, "the latest state was read and failed"
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(1000, 1004)})


def test_the_last_retry_with_an_invalid_setting_dead_letters_the_batch_and_never_raises(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    log = hub()
    log.publish([telemetry("bad-setting", n) for n in range(3)])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with changed_settings(run, {"MAX_FUTURE_SECONDS": "soon"}):
        with pytest.raises(FunctionFailed, match="MAX_FUTURE_SECONDS"):  # an earlier attempt: the host retries
            ingest(run, "telemetry", log.deliver(), retry_count=last - 1)
        ingest(run, "telemetry", log.deliver(), retry_count=last)  # the last: no exception
    letters = dead_letters(run, log)
    assert sorted(d["eventHub"]["sequenceNumber"] for d in letters) == [1000, 1001, 1002]
    assert all(d["reason"] == "internal: not processed after the last retry (SettingsError)" for d in letters)
    assert any(f"{log.hub}/{log.partition_id} 1000-1002" in r.getMessage() and "3 of 3 dead-lettered"
               in r.getMessage() for r in caplog.records)


def test_the_last_retry_of_command_responses_without_storage_logs_the_range_and_never_raises(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    log = Partition("command-responses", "5", first_sequence=4000)
    log.publish([b"{}", b"{}"])
    last = int(retry_policy("command_responses")["max_retry_count"])
    with changed_settings(run, {"DataStorage": None}):
        with pytest.raises(FunctionFailed, match="DataStorage"):
            run(user_function("command_responses")(log.deliver(), InvocationContext(
                "command_responses", retry_count=last - 1, max_retry_count=last)))
        run(user_function("command_responses")(log.deliver(), InvocationContext(
            "command_responses", retry_count=last, max_retry_count=last)))
    lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LOST unless replayed")]
    assert lost == ["LOST unless replayed: 2 command-responses events of command-responses partition 5, sequence "
                    "numbers 4000-4001, could not be dead-lettered either; replay them from Event Hubs"]


def test_a_last_retry_that_cannot_dead_letter_logs_the_range_lost_and_still_never_raises(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    log = hub()
    log.publish([telemetry("no-storage", n) for n in range(4)])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with failing_requests(run, "PUT", "/", times=100):  # neither the archive nor a dead letter can be written
        ingest(run, "telemetry", log.deliver(), retry_count=last)
    assert dead_letters(run, log) == [] and archived(run, log) == []
    lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LOST unless replayed")]
    assert lost == [f"LOST unless replayed: 4 telemetry events of {log.hub} partition {log.partition_id}, sequence "
                    "numbers 1000-1003, could not be dead-lettered either; replay them from Event Hubs"]


def test_a_clean_batch_writes_no_log_record_and_the_sdks_log_no_request(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The worker ships every record at Information to the host; storage requests
    must not each become one (azure-core logs two per request at that level)."""
    log = hub()
    log.publish([telemetry(f"quiet-{n}", n) for n in range(100)])  # every message from another device
    with caplog.at_level(logging.INFO):
        ingest(run, "telemetry", log.deliver())
    assert len(archived(run, log)) == 100
    ours = [r for r in caplog.records if not r.name.startswith("azure.functions")]  # the worker's own lines
    assert ours == [], [f"{r.name}: {r.getMessage()[:80]}" for r in ours]


def test_text_beyond_ascii_keeps_its_latest_state_through_the_partitions_transaction(run: Any) -> None:
    """The device's key goes into the transaction's JSON and its replace's URL; the
    metrics travel in the row's binary properties."""
    dev = f"caméra-北-{uuid.uuid4().hex[:4]}"
    log = hub()
    log.publish([telemetry(dev, 1, temp=20, note="a\u2028b"), telemetry(dev, 2, temp=21, note="é\u2029")])
    ingest(run, "telemetry", log.deliver(range(1000, 1001)))
    assert device(run, dev)["telemetry"]["metrics"] == {"temp": 20, "note": "a\u2028b"}
    ingest(run, "telemetry", log.deliver(range(1001, 1002)))  # a replace on the row's ETag
    assert device(run, dev)["telemetry"]["metrics"] == {"temp": 21, "note": "é\u2029"}
