"""Dead letters: what the functions reject is kept once, with the best reason known,
and listed and read over HTTP."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from shared.platform.deadletter import write_dead_letter
from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, DEADLETTERS_TABLE
from tests.harness import (
    changed_settings,
    deliver,
    failing_requests,
    http_request,
    json_of,
    storage_requests,
    user_function,
)
from tools import event_factory as ev
from tools.eventhub_factory import Partition, routed_body
from tools.invoke import FunctionFailed, InvocationContext, retry_policy

pytestmark = pytest.mark.usefixtures("app_env")
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=1)
FUTURE = "further in the future than the allowed clock skew"


def new_device(prefix: str = "dl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def hub(stream: str = "telemetry") -> Partition:
    """A partition of a hub of its own: tests share one Azurite."""
    return Partition(f"{stream}-{uuid.uuid4().hex[:8]}", "2", first_sequence=500, first_enqueued=START,
                     spacing=timedelta(seconds=1))


def reading(device: str, n: int, *, ahead: timedelta = timedelta(0), **extra: Any) -> bytes:
    """A routed telemetry message stamped ``ahead`` of the time its event is enqueued
    (:func:`hub` enqueues event ``n`` at START + n seconds)."""
    at = START + timedelta(seconds=n)
    stamp = (at + ahead).isoformat().replace("+00:00", "Z")
    return routed_body({"timestamp": stamp, "sequence": n, "metrics": {"temp": 20 + n}, **extra},
                       topic=f"devices/{device}/telemetry", at=at)


def ingest(run: Any, batch: Any, *, retry_count: int = 0, stream: str = "telemetry") -> None:
    function = "command_responses" if stream == "command-responses" else f"{stream}_ingest"
    last = int(retry_policy(function)["max_retry_count"])
    run(user_function(function)(batch, InvocationContext(function, retry_count=retry_count, max_retry_count=last)))


async def _documents(prefix: str) -> list[dict[str, Any]]:
    container = await data_store().container(DEADLETTER_CONTAINER)
    return [orjson.loads(await (await container.download_blob(b.name)).readall())
            async for b in container.list_blobs(name_starts_with=prefix)]


def stored(run: Any, log: Partition, stream: str = "telemetry") -> list[dict[str, Any]]:
    """The dead-letter documents of ``log``'s hub, as the blobs hold them."""
    return [d for d in run(_documents(f"{stream}/")) if d.get("eventHub", {}).get("hub") == log.hub]


def index_rows(run: Any, device_id: str) -> list[dict[str, Any]]:
    async def query() -> list[dict[str, Any]]:
        table = await data_store().table(DEADLETTERS_TABLE)
        return [dict(e) async for e in table.query_entities("deviceId eq @d", parameters={"d": device_id})]

    return run(query())  # type: ignore[no-any-return]


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- a dead letter is kept once, with the best reason known (issue 15, finding 4) -------------


def test_the_last_retry_keeps_the_validation_reason_of_a_message_dead_lettered_before(run: Any) -> None:
    """The last retry dead-letters every event it holds as ``internal``; a message
    already dead-lettered for what it is keeps that reason and its errors."""
    log = hub()
    log.publish([reading("keeper", 1), reading("keeper", 2, ahead=timedelta(hours=2))])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    # Every attempt dead-letters the bad message, then fails to write the archive; the last gives up.
    with failing_requests(run, "PUT", "/devstoreaccount1/telemetry/", times=100):
        for attempt in (0, last):
            with pytest.raises(FunctionFailed) if attempt < last else contextlib.nullcontext():
                ingest(run, log.deliver(), retry_count=attempt)
    letters = {d["eventHub"]["sequenceNumber"]: d for d in stored(run, log)}
    assert set(letters) == {500, 501}
    assert letters[500]["reason"].startswith("internal: not processed after the last retry")
    assert FUTURE in letters[501]["reason"], "the validation reason stays"
    assert letters[501]["errors"][0]["type"] == "timestamp_in_future", "and its errors"


def test_a_reason_that_says_more_replaces_an_internal_one_and_keeps_the_first_receipt(run: Any) -> None:
    dev, log = new_device(), hub()
    log.publish([reading(dev, 1, ahead=timedelta(hours=2))])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with changed_settings(run, {"MAX_FUTURE_SECONDS": "soon"}):  # the last retry cannot even read its settings
        ingest(run, log.deliver(), retry_count=last)
    [first] = stored(run, log)
    assert first["reason"] == "internal: not processed after the last retry (SettingsError)"
    ingest(run, log.deliver())  # replayed from Event Hubs once the setting is fixed
    [again] = stored(run, log)
    assert FUTURE in again["reason"] and again["errors"]
    assert again["receivedAt"] == first["receivedAt"], "listed where it first arrived"
    [row] = index_rows(run, dev)
    assert FUTURE in row["reason"], "the index follows the blob"


def test_the_same_rejection_written_again_is_one_dead_letter_with_one_index_row(run: Any) -> None:
    dev, log = new_device(), hub()
    log.publish([reading(dev, 1, ahead=timedelta(hours=2)), b"{not json"])
    for _ in range(3):  # a retry and two redeliveries
        ingest(run, log.deliver())
    letters = stored(run, log)
    assert len(letters) == 2
    [row] = index_rows(run, dev)
    assert row["receivedAt"] == next(d["receivedAt"] for d in letters if d["eventHub"]["sequenceNumber"] == 500)


def test_a_message_rejected_again_after_its_redrive_stays_redriven(run: Any) -> None:
    """A dead letter already redriven is never redriven twice, even when the event
    comes again and is rejected again (a replay from Event Hubs)."""
    origin = {"eventHub": {"hub": f"h-{uuid.uuid4().hex[:6]}", "partitionId": "0", "sequenceNumber": 7,
                           "offset": "70", "enqueuedTime": z(START)}}

    def write(reason: str, received_at: datetime) -> str:
        name: str = run(write_dead_letter(data_store(), stream="telemetry", reason=reason, errors=[], body=b"{}",
                                          origin=origin, day=START, received_at=received_at))
        return name

    run(_mark(write("first", START)))
    write("second", NOW)
    [document] = [d for d in run(_documents("telemetry/")) if d["eventHub"]["hub"] == origin["eventHub"]["hub"]]
    assert (document["reason"], document["redrivenAt"]) == ("second", z(NOW))
    assert document["receivedAt"] == START.isoformat()


def test_a_dead_letter_costs_a_blob_write_and_an_index_write_and_written_again_a_read_more(run: Any) -> None:
    origin = {"eventHub": {"hub": f"h-{uuid.uuid4().hex[:6]}", "partitionId": "0", "sequenceNumber": 1,
                           "offset": "0", "enqueuedTime": z(START)}}

    def write(reason: str) -> list[tuple[str, str]]:
        with storage_requests(run) as requests:
            run(write_dead_letter(data_store(), stream="telemetry", reason=reason, errors=[], body=b"[]",
                                  origin=origin, day=START, received_at=NOW))
        return [(method, "blob" if "/deadletter/" in path else "row") for method, path in requests.seen
                if "/deadletter/" in path or "/deadletters(" in path]

    assert write("first") == [("PUT", "blob"), ("PATCH", "row")], "created if missing, then indexed"
    assert write("first") == [("PUT", "blob"), ("GET", "blob"), ("PUT", "blob"), ("PATCH", "row")], (
        "found, read, rewritten if unchanged since read, indexed")
    assert write("internal: not processed after the last retry (X)") == [
        ("PUT", "blob"), ("GET", "blob"), ("PATCH", "row")], "found, read and kept"


async def _mark(name: str) -> None:
    blob = (await data_store().container(DEADLETTER_CONTAINER)).get_blob_client(name)
    document = orjson.loads(await (await blob.download_blob()).readall())
    await blob.upload_blob(orjson.dumps(document | {"redrivenAt": z(NOW)}), overwrite=True)


# --- list_dead_letters and get_dead_letter --------------------------------------------------


def listed(run: Any, **params: str) -> Any:
    return run(user_function("list_dead_letters")(http_request("GET", "deadletters", params=params)))


def items(run: Any, **params: str) -> list[dict[str, Any]]:
    response = listed(run, **params)
    assert response.status_code == 200, response.get_body()
    return json_of(response)["items"]  # type: ignore[no-any-return]


def get(run: Any, stream: str, dead_letter_id: str) -> Any:
    return run(user_function("get_dead_letter")(http_request(
        "GET", f"deadletters/{stream}/x", route_params={"stream": stream, "deadLetterId": dead_letter_id})))


@pytest.fixture
def one_per_stream(run: Any) -> tuple[str, dict[str, str]]:
    """A device with a dead letter in each stream, made by each function; their ids by stream."""
    dev = new_device()
    telemetry, inference, responses = hub(), hub("inference"), hub("command-responses")
    telemetry.publish([reading(dev, 1, ahead=timedelta(hours=2))])
    ingest(run, telemetry.deliver())
    inference.publish([routed_body({"timestamp": z(START), "inferenceId": "i", "model": {"name": "m"},
                                    "detections": []}, topic=f"devices/{dev}/inference", at=START)])
    ingest(run, inference.deliver(), stream="inference")
    responses.publish([routed_body({"commandId": "never-sent", "status": "succeeded"},
                                   topic=f"devices/{dev}/commands/never-sent/response", at=START)])
    ingest(run, responses.deliver(), stream="command-responses")
    unsupported = ev.connected(dev, 1, START) | {"eventType": "Microsoft.EventGrid.MQTTClientSomethingNew"}
    deliver(run, unsupported)
    found = items(run, deviceId=dev)
    return dev, {item["stream"]: item["deadLetterId"] for item in found}


def test_a_device_s_dead_letters_of_every_stream_are_listed_newest_first(
        run: Any, one_per_stream: tuple[str, dict[str, str]]) -> None:
    dev, _ = one_per_stream
    found = items(run, deviceId=dev)
    assert [item["stream"] for item in found] == ["lifecycle", "command-responses", "inference", "telemetry"]
    assert [item["receivedAt"] for item in found] == sorted((item["receivedAt"] for item in found), reverse=True)
    assert {item["deviceId"] for item in found} == {dev}
    assert "unsupported event type" in found[0]["reason"] and "no command" in found[1]["reason"]
    assert all("redrivenAt" not in item for item in found)


def test_pages_of_every_size_hold_each_dead_letter_exactly_once(
        run: Any, one_per_stream: tuple[str, dict[str, str]]) -> None:
    dev, _ = one_per_stream
    everything = [item["deadLetterId"] for item in items(run, deviceId=dev)]
    for size in (1, 2, 3):
        seen, token = [], None
        for _ in range(10):
            body = json_of(listed(run, deviceId=dev, limit=str(size), **({"continuationToken": token} if token
                                                                            else {})))
            assert len(body["items"]) <= size
            seen += [item["deadLetterId"] for item in body["items"]]
            token = body.get("continuationToken")
            if token is None:
                break
        assert seen == everything


def test_the_filters_stream_reason_prefix_device_and_since(run: Any,
                                                           one_per_stream: tuple[str, dict[str, str]]) -> None:
    dev, ids = one_per_stream
    assert [item["deadLetterId"] for item in items(run, deviceId=dev, stream="inference")] == [ids["inference"]]
    assert [item["stream"] for item in items(run, deviceId=dev, reason="timestamp ")] == ["telemetry"]
    assert items(run, deviceId=dev, reason="imestamp") == [], "a prefix, not a substring"
    assert items(run, deviceId=dev, reason="Timestamp") == [], "case-sensitive"
    assert items(run, deviceId=dev, since=z(datetime.now(UTC) + timedelta(seconds=1))) == []
    assert len(items(run, deviceId=dev, since=z(NOW - timedelta(minutes=1)))) == 4
    assert items(run, deviceId=new_device()) == []


def test_a_stream_s_listing_is_one_range_query_of_its_partition_and_reads_no_blob(
        run: Any, one_per_stream: tuple[str, dict[str, str]]) -> None:
    dev, _ = one_per_stream
    with storage_requests(run) as requests:
        items(run, stream="telemetry", deviceId=dev, since=z(NOW - timedelta(minutes=1)), limit="10")
    queries = requests.to("/deadletters()")
    assert len(queries) == 1, requests.seen
    assert "PartitionKey eq 'telemetry'" in queries[0][1] and "RowKey lt" in queries[0][1]
    assert requests.to(f"/{DEADLETTER_CONTAINER}/") == [], "the index answers alone"
    with storage_requests(run) as requests:
        items(run, deviceId=dev, limit="10")
    assert len(requests.to("/deadletters()")) == 4, "one range query per stream"


def test_get_dead_letter_returns_the_stored_document_with_its_id_and_original_bytes(
        run: Any, one_per_stream: tuple[str, dict[str, str]]) -> None:
    dev, ids = one_per_stream
    with storage_requests(run) as requests:
        response = get(run, "telemetry", ids["telemetry"])
    assert len([r for r in requests.seen if "/deadletter/" in r[1]]) == 1, "one point read"
    assert response.status_code == 200
    letter = json_of(response)
    assert letter["deadLetterId"] == ids["telemetry"] and letter["stream"] == "telemetry"
    assert FUTURE in letter["reason"] and letter["errors"][0]["loc"] == ["timestamp"]
    assert orjson.loads(letter["body"])["subject"] == f"devices/{dev}/telemetry"
    assert set(letter["eventHub"]) == {"hub", "partitionId", "sequenceNumber", "offset", "enqueuedTime"}
    lifecycle = json_of(get(run, "lifecycle", ids["lifecycle"]))
    assert lifecycle["eventGrid"]["eventType"] == "Microsoft.EventGrid.MQTTClientSomethingNew"


def test_get_dead_letter_of_an_id_never_issued_is_404(run: Any,
                                                     one_per_stream: tuple[str, dict[str, str]]) -> None:
    _, ids = one_per_stream
    response = get(run, "telemetry", "20261120-" + "0" * 32)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert get(run, "inference", ids["telemetry"]).status_code == 404, "another stream's id"


@pytest.mark.parametrize("stream, dead_letter_id, rule", [
    ("telemetry", "..", "yyyyMMdd-"),
    ("telemetry", "../inference/20261120-" + "0" * 32, "yyyyMMdd-"),
    ("telemetry", "2026/11/20/" + "0" * 32, "yyyyMMdd-"),
    ("telemetry", "20261120-" + "0" * 31, "yyyyMMdd-"),
    ("telemetry", "20261120-" + "A" * 32, "lowercase"),
    ("telemetry", "20261320-" + "0" * 32, "names no day"),
    ("telemetry", "", "yyyyMMdd-"),
    ("archive", "20261120-" + "0" * 32, "telemetry, inference, command-responses, lifecycle"),
    ("..", "20261120-" + "0" * 32, "one of"),
])
def test_get_dead_letter_with_a_malformed_stream_or_id_is_a_400_that_says_why(
        run: Any, stream: str, dead_letter_id: str, rule: str) -> None:
    response = get(run, stream, dead_letter_id)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    body = json_of(response)
    assert rule in body["detail"] and body["errors"][0]["loc"][0] == "path"


@pytest.mark.parametrize("params, rule", [
    ({"stream": "archive"}, "must be one of telemetry, inference, command-responses, lifecycle"),
    ({"stream": ""}, "leave it out"),
    ({"since": "yesterday"}, "RFC 3339"),
    ({"since": "2026-11-20T08:00:00"}, "RFC 3339"),
    ({"limit": "1001"}, "between 1 and 1000"),
    ({"limit": "9" * 400}, "between 1 and 1000"),
    ({"reason": ""}, "leave it out"),
    ({"reason": "x" * 1025}, "1 to 1024 characters"),
    ({"deviceId": "x" * 129}, "128"),
    ({"continuationToken": "forged.token"}, "not a token this API issued"),
])
def test_a_bad_listing_parameter_is_a_400_that_names_it(run: Any, params: dict[str, str], rule: str) -> None:
    response = listed(run, **params)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    body = json_of(response)
    [name] = params
    assert body["detail"].startswith(f"{name} ") and rule in body["detail"]
    assert body["errors"][0]["loc"] == ["query", name]


def test_a_continuation_token_only_continues_the_listing_it_was_issued_for(
        run: Any, one_per_stream: tuple[str, dict[str, str]]) -> None:
    dev, _ = one_per_stream
    token = json_of(listed(run, deviceId=dev, limit="1"))["continuationToken"]
    assert listed(run, deviceId=dev, continuationToken=token).status_code == 200
    for other in ({"deviceId": dev, "stream": "telemetry"}, {"deviceId": new_device()}, {},
                  {"deviceId": dev, "reason": "x"}):
        response = listed(run, **other, continuationToken=token)
        assert response.status_code == 400, other
        assert "not a token this API issued" in json_of(response)["detail"]
    forged = token.replace(".", ".A", 1)[:-1]
    assert listed(run, deviceId=dev, continuationToken=forged).status_code == 400
