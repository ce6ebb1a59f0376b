"""Redrive (``python -m tools.redrive``): a dead letter whose cause is fixed goes
through its stream's pipeline exactly once and is marked; dry runs, ones rejected
again, two runs at once, Ctrl-C and resume, answers and life cycle events, array
elements, a reindex, and the command line's refusals."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import azure.functions as func
import orjson
import pytest

from shared.deadletters.redrive import Outcome, redrive_one
from shared.deadletters.store import Selection
from shared.platform.deadletter import write_dead_letter
from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTERS_TABLE, TELEMETRY_CONTAINER
from standins import event_factory as ev
from standins.eventhub_factory import Partition, routed_body
from standins.invoke import retry_policy
from standins.services import ROOT
from tests.support.deadletters import (
    FUTURE,
    NOW,
    START,
    _documents,
    get,
    hub,
    index_rows,
    ingest,
    items,
    new_device,
    reading,
    stored,
    z,
)
from tests.support.harness import changed_settings, deliver, failing_requests, http_request, json_of, user_function
from tools import redrive as tool

pytestmark = pytest.mark.usefixtures("app_env")


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
