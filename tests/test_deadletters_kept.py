"""Dead letters are kept once, with the best reason known (issue 15, finding 4): what
the functions reject is stored once with one index row however often it comes, a
reason that says more replaces an internal one, a redriven one stays marked; and
what writing one costs in storage requests."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from shared.platform.deadletter import write_dead_letter
from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER
from standins.invoke import FunctionFailed, retry_policy
from tests.support.deadletters import (
    FUTURE,
    NOW,
    START,
    _documents,
    hub,
    index_rows,
    ingest,
    new_device,
    reading,
    stored,
    z,
)
from tests.support.harness import changed_settings, failing_requests, storage_requests

pytestmark = pytest.mark.usefixtures("app_env")


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
