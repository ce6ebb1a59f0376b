"""Dead letters: what the functions reject is kept once, with the best reason known,
listed and read over HTTP, and redriven through its pipeline once its cause is fixed
(``python -m tools.redrive``), exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import orjson
import pytest

from shared.deadletters.redrive import Outcome, redrive_one
from shared.deadletters.store import Selection
from shared.platform.deadletter import write_dead_letter
from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER, DEADLETTERS_TABLE, TELEMETRY_CONTAINER
from standins import event_factory as ev
from standins.eventhub_factory import Partition, routed_body
from standins.invoke import FunctionFailed, InvocationContext, retry_policy
from standins.services import ROOT
from tests.support.harness import (
    changed_settings,
    deliver,
    failing_requests,
    http_request,
    json_of,
    storage_requests,
    user_function,
)
from tools import redrive as tool

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


# --- redrive ----------------------------------------------------------------------------------


def archived(run: Any, log: Partition) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        container = await data_store().container(TELEMETRY_CONTAINER)
        lines = []
        async for blob in container.list_blobs():
            if f"/{log.hub}-" in blob.name:
                data = await (await container.download_blob(blob.name)).readall()
                lines += [orjson.loads(line) for line in data.splitlines()]
        return lines

    return run(read())  # type: ignore[no-any-return]


def redrive(run: Any, *argv: str) -> tuple[int, str]:
    """``python -m tools.redrive *argv`` on the tests' loop: its exit status and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    status = run(tool.run_command(tool.parse_args(argv), out=out, err=err, stop=asyncio.Event()))
    return status, out.getvalue()


def bad_clock(run: Any, *, count: int = 1, **extra: Any) -> tuple[str, Partition]:
    """A device whose ``count`` messages were dead-lettered for a clock two hours ahead."""
    dev, log = new_device("clock"), hub()
    log.publish([reading(dev, n, ahead=timedelta(hours=2), **extra) for n in range(count)])
    ingest(run, log.deliver())
    assert all(FUTURE in item["reason"] for item in items(run, deviceId=dev))
    return dev, log


FIXED: dict[str, str | None] = {"MAX_FUTURE_SECONDS": "86400"}  # the rule relaxed: a day of clock skew


def test_a_message_rejected_by_a_rule_since_fixed_is_redriven_into_the_archive_once_and_marked(run: Any) -> None:
    dev, log = bad_clock(run)
    with changed_settings(run, FIXED):
        status, _ = redrive(run, "--device", dev)
        assert status == 0
        again, summary = redrive(run, "--device", dev)
    lines = archived(run, log)
    assert [(line["deviceId"], line["eventHub"]["sequenceNumber"]) for line in lines] == [(dev, 500)]
    [letter] = items(run, deviceId=dev)
    assert letter["redrivenAt"]
    assert (again, summary.splitlines()[0]) == (0, "0 dead letter(s) selected")


def test_a_redriven_message_reaches_its_pipeline_is_marked_and_a_second_run_redrives_nothing(run: Any) -> None:
    dev, _ = bad_clock(run, count=3)
    before = {item["deadLetterId"]: item for item in items(run, deviceId=dev)}
    with changed_settings(run, FIXED):
        status, summary = redrive(run, "--device", dev)
        assert (status, summary.splitlines()) == (0, ["3 dead letter(s) selected", "redriven: 3"])
        again, summary = redrive(run, "--device", dev)
        assert (again, summary.splitlines()) == (0, ["0 dead letter(s) selected"])
    device = json_of(run(user_function("get_device")(http_request("GET", "d", route_params={"deviceId": dev}))))
    assert device["telemetry"]["metrics"] == {"temp": 22}, "the newest of the three is the latest state"
    after = items(run, deviceId=dev)
    assert {item["deadLetterId"] for item in after} == set(before), "still listed, where they were"
    assert all(item["redrivenAt"] >= item["receivedAt"] for item in after)
    for item in after:
        letter = json_of(get(run, "telemetry", item["deadLetterId"]))
        assert letter["redrivenAt"] == item["redrivenAt"] and FUTURE in letter["reason"], "marked, reason kept"


def test_a_dry_run_lists_and_counts_by_reason_and_changes_nothing(run: Any) -> None:
    dev, _ = bad_clock(run, count=2)
    blobs = run(_documents("telemetry/"))
    with changed_settings(run, FIXED):
        status, printed = redrive(run, "--device", dev, "--dry-run")
    lines = printed.splitlines()
    assert status == 0 and lines[0] == "receivedAt\tstream\tdeadLetterId\tdeviceId\treason"
    assert len(lines[1:3]) == 2 and all("\ttelemetry\t" in line and f"\t{dev}\t" in line for line in lines[1:3])
    assert lines[3:] == ["would redrive 2 dead letter(s):",
                         f"       2  timestamp <time> lies {FUTURE}; the device's clock is wrong"]
    assert run(_documents("telemetry/")) == blobs
    assert all("redrivenAt" not in item for item in items(run, deviceId=dev))


def test_one_rejected_again_stays_with_its_new_reason_unmarked(run: Any) -> None:
    dev, log = bad_clock(run, note="x" * 2000)  # too far ahead, and a field longer than 1 024 characters
    [before] = stored(run, log)
    with changed_settings(run, FIXED):
        status, summary = redrive(run, "--device", dev)
    assert status == 1
    assert summary.splitlines() == ["1 dead letter(s) selected", "rejected again: 1",
                                    "       1  note is longer than N characters"]
    [after] = stored(run, log)
    assert after["reason"] == "note is longer than 1024 characters" and after["errors"][0]["loc"] == ["note"]
    assert after["receivedAt"] == before["receivedAt"] and "redrivenAt" not in after
    [item] = items(run, deviceId=dev)
    assert item["reason"] == after["reason"] and "redrivenAt" not in item
    assert archived(run, log) == []


def test_two_runs_at_once_redrive_each_dead_letter_once(run: Any) -> None:
    dev, _ = bad_clock(run, count=4)

    async def both() -> list[tool.Tally]:
        rows = await tool.select(Selection(device_id=dev), None)
        return await asyncio.gather(*(tool.redrive(rows, rate=0, stop=asyncio.Event(), err=io.StringIO())
                                      for _ in range(2)))

    with changed_settings(run, FIXED):
        first, second = run(both())
    assert first.outcomes[Outcome.REDRIVEN] + second.outcomes[Outcome.REDRIVEN] == 4
    assert set(first.outcomes + second.outcomes) <= {Outcome.REDRIVEN, Outcome.BUSY, Outcome.ALREADY}
    assert all(item["redrivenAt"] for item in items(run, deviceId=dev))


def test_ctrl_c_stops_after_the_dead_letter_being_sent_and_a_second_run_goes_on(
        run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    dev, _ = bad_clock(run, count=3)
    stop = asyncio.Event()
    original = redrive_one

    async def then_ctrl_c(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        stop.set()  # Ctrl-C while the first was being sent
        return result

    monkeypatch.setattr(tool, "redrive_one", then_ctrl_c)
    out = io.StringIO()
    with changed_settings(run, FIXED):
        status = run(tool.run_command(tool.parse_args(["--device", dev]), out=out, err=io.StringIO(), stop=stop))
        assert status == 130
        assert out.getvalue().splitlines()[-2:] == ["redriven: 1", "interrupted: 2 not attempted; run again to "
                                                                   "continue"]
        assert Counter("redrivenAt" in item for item in items(run, deviceId=dev)) == {True: 1, False: 2}
        monkeypatch.setattr(tool, "redrive_one", original)
        assert redrive(run, "--device", dev)[1].splitlines() == ["2 dead letter(s) selected", "redriven: 2"]


def test_ctrl_c_at_the_terminal_stops_the_command_with_status_130_and_a_summary(run: Any) -> None:
    dev, _ = bad_clock(run, count=4)
    env = {**os.environ, "MAX_FUTURE_SECONDS": "86400", "PYTHONUNBUFFERED": "1"}  # FIXED
    process = subprocess.Popen([sys.executable, "-m", "tools.redrive", "--device", dev, "--rate", "0.2"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(item.get("redrivenAt") for item in items(run, deviceId=dev)):  # the first is done
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)  # while it waits (5 s apart) before the second
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "stopping after the dead letter being sent" in err
    assert out.splitlines() == ["4 dead letter(s) selected", "redriven: 1",
                                "interrupted: 3 not attempted; run again to continue"]
    assert Counter("redrivenAt" in item for item in items(run, deviceId=dev)) == {True: 1, False: 3}


def test_an_answer_lost_to_a_storage_outage_is_redriven_and_completes_its_command(run: Any) -> None:
    dev = new_device("answering")
    deliver(run, ev.created_or_updated(dev, START))
    sent = json_of(run(user_function("send_command")(http_request(
        "POST", "c", route_params={"deviceId": dev}, body={"name": "reboot"}))))
    assert sent["status"] == "pending"
    cid, log = sent["commandId"], hub("command-responses")
    log.publish([routed_body({"commandId": cid, "status": "succeeded"},
                             topic=f"devices/{dev}/commands/{cid}/response", at=START)])
    last = int(retry_policy("command_responses")["max_retry_count"])
    with failing_requests(run, "PUT", "/commands(", times=100):
        ingest(run, log.deliver(), retry_count=last, stream="command-responses")
    [letter] = items(run, deviceId=dev)
    assert letter["reason"].startswith("internal: not processed after the last retry")
    status, summary = redrive(run, "--stream", "command-responses", "--device", dev)
    assert (status, summary.splitlines()[-1]) == (0, "redriven: 1")
    command = json_of(run(user_function("get_command")(http_request(
        "GET", "c", route_params={"deviceId": dev, "commandId": cid}))))
    assert command["status"] == "succeeded"


def test_a_life_cycle_event_storage_once_refused_is_applied_when_redriven(run: Any) -> None:
    from shared.lifecycle.events import envelope_json

    dev = new_device("refused")
    document = ev.created_or_updated(dev, START, attributes={"site": "north"})
    event = ev.to_function_event(document)
    assert isinstance(event, func.EventGridEvent)
    run(write_dead_letter(
        data_store(), stream="lifecycle", reason="storage refused the write (HTTP 413, HttpResponseError)",
        errors=[], body=orjson.dumps(envelope_json(event), default=str),
        origin={"eventGrid": {"id": event.id, "eventType": event.event_type, "subject": event.subject}},
        day=START, received_at=NOW))
    status, summary = redrive(run, "--stream", "lifecycle", "--device", dev)
    assert (status, summary.splitlines()[-1]) == (0, "redriven: 1")
    device = json_of(run(user_function("get_device")(http_request("GET", "d", route_params={"deviceId": dev}))))
    assert (device["state"], device["attributes"]) == ("Enabled", {"site": "north"})


def test_a_life_cycle_event_rejected_again_stays_as_it_was(run: Any) -> None:
    dev = new_device("unknown-type")
    deliver(run, ev.connected(dev, 1, START) | {"eventType": "Microsoft.EventGrid.MQTTClientSomethingNew"})
    [before] = items(run, deviceId=dev)
    status, summary = redrive(run, "--stream", "lifecycle", "--device", dev)
    assert status == 1 and summary.splitlines()[1] == "rejected again: 1"
    assert items(run, deviceId=dev) == [before], "the same dead letter: the event came back byte for byte"


def test_an_element_of_an_array_body_is_not_redriven_and_the_run_says_why(run: Any) -> None:
    dev, log = new_device("array"), hub()
    good = {"deviceId": dev, "timestamp": z(START), "metrics": {"temp": 1}}
    log.publish([orjson.dumps([good, good | {"timestamp": z(START + timedelta(hours=2))}])])
    ingest(run, log.deliver())
    [item] = items(run, deviceId=dev)
    printed = redrive(run, "--device", dev, "--dry-run")[1]
    assert printed.splitlines()[-2:] == ["would redrive 0 dead letter(s):", "not redrivable: 1 element(s) of array "
                                         "bodies (the pipeline reads no position from an event)"]
    with changed_settings(run, FIXED):
        status, summary = redrive(run, "--device", dev)
    assert status == 1 and summary.splitlines()[1:] == [
        "not redrivable: 1", "       1  an element of an array body (the pipeline reads no position from an event)"]
    assert items(run, deviceId=dev) == [item]


def test_reindex_lists_dead_letters_stored_before_the_index_existed(run: Any) -> None:
    dev, _ = bad_clock(run)
    [row] = index_rows(run, dev)

    async def forget() -> None:
        table = await data_store().table(DEADLETTERS_TABLE)
        await table.delete_entity(row["PartitionKey"], row["RowKey"])

    run(forget())
    assert items(run, deviceId=dev) == []
    status, printed = redrive(run, "--stream", "telemetry", "--reindex")
    assert status == 0 and printed.startswith("indexed ")
    [again] = index_rows(run, dev)
    assert {k: again[k] for k in ("PartitionKey", "RowKey", "reason", "deviceId")} == {
        k: row[k] for k in ("PartitionKey", "RowKey", "reason", "deviceId")}


def test_reason_kinds_mask_times_numbers_and_quoted_values() -> None:
    assert tool.reason_kind("body is 300000 bytes, more than 262144") == "body is N bytes, more than N"
    assert tool.reason_kind("no command 'abc' of device \"d-1\": never sent") == (
        "no command '…' of device '…': never sent")
    assert tool.reason_kind("timestamp 2026-11-20T08:00:00Z lies ahead") == "timestamp <time> lies ahead"


@pytest.mark.parametrize("argv, message", [
    (["--stream", "archive"], "invalid choice"),
    (["--since", "yesterday"], "RFC 3339"),
    (["--device", "x" * 129], "128"),
    (["--reason", ""], "1 to 1024"),
    (["--limit", "0"], "at least 1"),
    (["--rate", "-1"], "negative"),
])
def test_the_command_refuses_a_bad_selection_saying_why(argv: list[str], message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        tool.parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
