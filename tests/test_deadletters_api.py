"""Dead letters listed and read over HTTP (list_dead_letters, get_dead_letter): every
stream's, newest first, paged exactly once, filtered, from the index alone; one read
whole; malformed parameters, ids and continuation tokens refused saying why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from shared.platform.storage_names import DEADLETTER_CONTAINER
from standins import event_factory as ev
from standins.eventhub_factory import routed_body
from tests.support.deadletters import FUTURE, NOW, START, get, hub, ingest, items, listed, new_device, reading, z
from tests.support.harness import deliver, json_of, storage_requests

pytestmark = pytest.mark.usefixtures("app_env")


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


def test_get_dead_letter_of_a_day_no_calendar_has_is_404_as_the_document_admits_it(run: Any) -> None:
    response = get(run, "telemetry", "20260231-" + "0" * 32)  # matches deadLetterId's pattern: not a 400
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("stream, dead_letter_id, rule", [
    ("telemetry", "..", "yyyyMMdd-"),
    ("telemetry", "../inference/20261120-" + "0" * 32, "yyyyMMdd-"),
    ("telemetry", "2026/11/20/" + "0" * 32, "yyyyMMdd-"),
    ("telemetry", "20261120-" + "0" * 31, "yyyyMMdd-"),
    ("telemetry", "20261120-" + "A" * 32, "lowercase"),
    ("telemetry", "20261320-" + "0" * 32, "yyyyMMdd-"),
    ("telemetry", "20261100-" + "0" * 32, "yyyyMMdd-"),
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
