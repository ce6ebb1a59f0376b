"""python -m tools.replay: a range of one partition, read back from Event Hubs (the AMQP
stand-in, through the real consumer) and ingested by the function's code against
Azurite, lands every event in exactly one place with its original origin, however
much of the range the archive held; twice, or beside the live function, changes
nothing; a range the partition does not hold is refused at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from shared.platform.storage import data_store
from shared.platform.storage_names import DEADLETTER_CONTAINER
from shared.platform.timestamps import format_timestamp
from standins.eventhub_factory import Partition, hub_partition, routed_body
from standins.eventhubs_amqp.batches import CONTENT_TYPE
from standins.eventhubs_amqp.service import EventHubsStandIn
from standins.invoke import InvocationContext, deliver, retry_policy, user_function
from standins.services import ROOT
from tests.support.harness import failing_requests
from tests.support.streams import archived, dead_letters
from tools.replay.model import Request, Summary
from tools.replay.replaying import GIVE_UP_REASON, replay

pytestmark = pytest.mark.usefixtures("app_env")
DEVICE = "replay-cam"
PARTITION = hub_partition(DEVICE)


@pytest.fixture
def hubs(run: Any) -> Iterator[EventHubsStandIn]:
    """The stand-in, serving for the test, its partitions starting at a block of
    sequence numbers of the test's own: Azurite is the session's, and the archive's
    ledger is per hub and partition."""
    stand_in = EventHubsStandIn(first_sequence=random.randrange(1, 10**6) * 10**6)
    serving = stand_in.serving()
    run(serving.__aenter__())
    yield stand_in
    run(serving.__aexit__(None, None, None))


def telemetry(n: int, **payload: Any) -> bytes:
    at = datetime.now(UTC) - timedelta(minutes=5) + timedelta(milliseconds=n)
    message = payload or {"timestamp": at.isoformat().replace("+00:00", "Z"), "sequence": n,
                          "metrics": {"cpuTemp": 40 + n % 30}}
    return routed_body(message, topic=f"devices/{DEVICE}/telemetry", at=at)


def publish(run: Any, hubs: EventHubsStandIn, bodies: list[bytes], hub: str = "telemetry") -> Partition:
    """``bodies`` sent as Event Grid routes them (the device's id the partition key);
    the partition's log."""
    async def send() -> None:
        async with EventHubProducerClient.from_connection_string(hubs.connection_string,
                                                                 eventhub_name=hub) as producer:
            for start in range(0, len(bodies), 500):
                batch = await producer.create_batch(partition_key=DEVICE)
                for body in bodies[start:start + 500]:
                    event = EventData(body)
                    event.content_type = CONTENT_TYPE
                    batch.add(event)
                await producer.send_batch(batch)

    run(send())
    return hubs.logs[(hub, PARTITION)]


def request(hubs: EventHubsStandIn, first: int, last: int, **options: Any) -> Request:
    return Request("telemetry", PARTITION, first, last, "telemetry", connection_string=hubs.connection_string,
                   **{"wait": 10.0, **options})


def in_block(log: Partition, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The archive lines or dead letters of ``log``'s events."""
    return [i for i in items if i["eventHub"]["partitionId"] == log.partition_id
            and log.first_sequence <= i["eventHub"]["sequenceNumber"] < log.next_sequence]


def places(run: Any, log: Partition) -> Counter[int]:
    """How often each event of ``log`` is archived or dead-lettered."""
    found = in_block(log, archived(run, log)) + in_block(log, dead_letters(run, log))
    return Counter(item["eventHub"]["sequenceNumber"] for item in found)


def each_once(log: Partition) -> Counter[int]:
    return Counter(range(log.first_sequence, log.next_sequence))


def live(run: Any, log: Partition, first: int, last: int) -> None:
    """``first``-``last`` through telemetry_ingest, as the host delivers them."""
    run(deliver(log, range(first, last + 1)))


def test_a_replay_across_below_and_above_what_is_archived_archives_each_event_once_with_its_origin(
        run: Any, hubs: EventHubsStandIn) -> None:
    log = publish(run, hubs, [telemetry(n) for n in range(40)])
    b = log.first_sequence
    live(run, log, b + 10, b + 19)
    live(run, log, b + 25, b + 29)

    across = run(replay(request(hubs, b + 5, b + 34)))
    assert (across.outcome, across.read, across.archived_now, across.already_archived) == ("complete", 30, 15, 15)
    everything = run(replay(request(hubs, b, b + 39)))  # below and above what is archived now
    assert (everything.read, everything.archived_now, everything.already_archived) == (40, 10, 30)
    assert not everything.dead_lettered and everything.exit_code == 0

    assert places(run, log) == each_once(log)
    for line in in_block(log, archived(run, log)):  # the event's own origin, replayed or live
        origin = line["eventHub"]
        event = log.log[origin["sequenceNumber"] - b]
        assert (origin["offset"], origin["enqueuedTime"]) == (str(event.offset), format_timestamp(event.enqueued))
        assert line["message"]["sequence"] == origin["sequenceNumber"] - b


def test_the_inference_hub_is_replayed_as_inference(run: Any, hubs: EventHubsStandIn) -> None:
    at = datetime.now(UTC) - timedelta(minutes=2)
    results = [{"timestamp": at.isoformat().replace("+00:00", "Z"), "inferenceId": f"i-{n}",
                "model": {"name": "yolo", "version": "8"}, "detections": []} for n in range(6)]
    log = publish(run, hubs, [routed_body(r, topic=f"devices/{DEVICE}/inference", at=at) for r in results],
                  hub="inference")
    b = log.first_sequence
    summary = run(replay(Request("inference", PARTITION, b, b + 5, "inference",
                                 connection_string=hubs.connection_string)))
    assert (summary.outcome, summary.archived_now) == ("complete", 6)
    assert Counter(line["eventHub"]["sequenceNumber"] for line in in_block(log, archived(run, log, "inference"))) \
        == each_once(log)


def test_a_second_replay_archives_nothing(run: Any, hubs: EventHubsStandIn) -> None:
    log = publish(run, hubs, [telemetry(n) for n in range(10)])
    b = log.first_sequence
    first = run(replay(request(hubs, b, b + 9)))
    lines = in_block(log, archived(run, log))
    again = run(replay(request(hubs, b, b + 9)))
    assert (first.archived_now, first.already_archived) == (10, 0)
    assert (again.read, again.archived_now, again.already_archived, again.outcome) == (10, 0, 10, "complete")
    assert in_block(log, archived(run, log)) == lines


def test_a_range_the_last_retry_dead_lettered_is_archived_and_those_dead_letters_marked_redriven(
        run: Any, hubs: EventHubsStandIn) -> None:
    log = publish(run, hubs, [telemetry(n) if n != 6 else telemetry(n, metrics={"x": 1}) for n in range(12)])
    b = log.first_sequence
    live(run, log, b, b + 3)
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with failing_requests(run, "PUT", "/devstoreaccount1/telemetry/", times=50):  # the archive cannot be written
        run(user_function("telemetry_ingest")(log.deliver(range(b + 4, b + 12)), InvocationContext(
            "telemetry_ingest", retry_count=last, max_retry_count=last)))
    letters = {d["eventHub"]["sequenceNumber"]: d for d in in_block(log, dead_letters(run, log))}
    assert sorted(letters) == list(range(b + 4, b + 12)), "the whole batch, the bad message too"
    assert all(d["reason"].startswith(GIVE_UP_REASON) for s, d in letters.items() if s != b + 6)
    assert "timestamp" in letters[b + 6]["reason"], "a validation reason is never replaced by the last retry's"
    assert set(run(_dead_letter_names())) >= {_name_of(log, seq) for seq in letters if seq != b + 6}, \
        "the tool finds them by id"

    summary = run(replay(request(hubs, b, b + 11)))
    assert (summary.archived_now, summary.already_archived, summary.superseded) == (7, 4, 7)
    assert list(summary.dead_lettered.values()) == [1]
    lines = Counter(line["eventHub"]["sequenceNumber"] for line in in_block(log, archived(run, log)))
    assert lines == Counter(s for s in range(b, b + 12) if s != b + 6), "each archived once"
    letters = {d["eventHub"]["sequenceNumber"]: d for d in in_block(log, dead_letters(run, log))}
    assert {s for s, d in letters.items() if "redrivenAt" not in d} == {b + 6}, "the others are history now"
    bad = letters[b + 6]
    assert "timestamp" in bad["reason"], "its own reason now"


def test_bad_messages_in_the_range_end_as_dead_letters_with_their_validation_reason(
        run: Any, hubs: EventHubsStandIn) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    log = publish(run, hubs, [telemetry(0), telemetry(1, metrics={"cpuTemp": 50}),
                              telemetry(2, timestamp=at, metrics="hot"), telemetry(3),
                              telemetry(4, timestamp=at, deviceId="someone-else", metrics={"x": 1})])
    b = log.first_sequence
    summary = run(replay(request(hubs, b, b + 4)))
    assert (summary.read, summary.archived_now, sum(summary.dead_lettered.values())) == (5, 2, 3)
    letters = {d["eventHub"]["sequenceNumber"]: d for d in in_block(log, dead_letters(run, log))}
    assert sorted(letters) == [b + 1, b + 2, b + 4]
    assert Counter(d["reason"] for d in letters.values()) == summary.dead_lettered
    assert "spoofed" in letters[b + 4]["reason"]
    for sequence, letter in letters.items():  # the original bytes and origin
        event = log.log[sequence - b]
        assert letter["body"].encode() == event.body
        assert letter["eventHub"]["offset"] == str(event.offset)
        assert letter["eventHub"]["enqueuedTime"] == format_timestamp(event.enqueued)
        assert not letter["reason"].startswith(GIVE_UP_REASON)
    again = run(replay(request(hubs, b, b + 4)))
    assert (again.archived_now, again.dead_lettered, again.superseded) == (0, summary.dead_lettered, 0)
    assert places(run, log) == each_once(log)


def test_a_replay_beside_a_live_delivery_of_overlapping_events_archives_each_once(
        run: Any, hubs: EventHubsStandIn) -> None:
    log = publish(run, hubs, [telemetry(n) for n in range(600)])
    b = log.first_sequence
    replaying = asyncio.Event()

    class Started:
        def started(self, summary: Summary) -> None: ...
        def finished(self, summary: Summary) -> None: ...

        def batch(self, summary: Summary, first: int, last: int) -> None:
            replaying.set()

    async def function() -> None:  # the host delivering b+150.. while the replay runs
        await replaying.wait()
        for batch in log.batches(30, range(b + 150, b + 600)):
            await user_function("telemetry_ingest")(batch, InvocationContext("telemetry_ingest"))

    async def both() -> Summary:
        summary, _ = await asyncio.gather(replay(request(hubs, b, b + 599, batch_size=50), progress=Started()),
                                          function())
        return summary

    summary = run(both())
    assert summary.outcome == "complete" and summary.read == 600
    assert summary.archived_now + summary.already_archived == 600
    assert summary.archived_now >= 150 and summary.already_archived > 0, "the two met"
    assert places(run, log) == each_once(log)


def test_a_range_past_the_end_or_expired_from_retention_is_refused_at_once(
        run: Any, hubs: EventHubsStandIn) -> None:
    log = publish(run, hubs, [telemetry(n) for n in range(5)])
    b = log.first_sequence
    started = time.monotonic()
    past = run(replay(request(hubs, b + 3, b + 9)))
    expired = run(replay(request(hubs, b - 5, b + 2)))
    empty = run(replay(Request("telemetry", "0" if PARTITION == "1" else "1", b, b, "telemetry",
                               connection_string=hubs.connection_string)))
    assert time.monotonic() - started < 20, "refused, not waited for"
    assert (past.outcome, past.read, past.exit_code) == ("refused", 0, 1)
    assert f"past the end of telemetry partition {PARTITION}, which ends at sequence number {b + 4}" in past.problem
    assert f"expired from retention: telemetry partition {PARTITION} begins at sequence number {b}" in expired.problem
    assert "which holds no event" in empty.problem
    assert hubs.sent == 0 and in_block(log, archived(run, log)) == []


def test_a_partition_that_stops_sending_is_a_stall_after_the_bounded_wait(
        run: Any, hubs: EventHubsStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    log = publish(run, hubs, [telemetry(n) for n in range(5)])
    monkeypatch.setattr(hubs, "_feed", lambda peer: None)  # attached, then nothing
    started = time.monotonic()
    summary = run(replay(request(hubs, log.first_sequence, log.first_sequence + 4, wait=2.0)))
    assert (summary.outcome, summary.exit_code) == ("stalled", 1)
    assert f"no event {log.first_sequence} within 2 s" in summary.problem
    assert time.monotonic() - started < 15


def test_stopping_between_batches_leaves_a_range_that_a_replay_from_where_it_stopped_completes(
        run: Any, hubs: EventHubsStandIn) -> None:
    log = publish(run, hubs, [telemetry(n) for n in range(30)])
    b = log.first_sequence
    stop = asyncio.Event()

    class StopAfterTwo:
        def started(self, summary: Summary) -> None: ...
        def finished(self, summary: Summary) -> None: ...

        def batch(self, summary: Summary, first: int, last: int) -> None:
            if summary.batches == 2:
                stop.set()  # what Ctrl-C does

    stopped = run(replay(request(hubs, b, b + 29, batch_size=10), progress=StopAfterTwo(), stop=stop))
    assert (stopped.outcome, stopped.read, stopped.next_sequence, stopped.exit_code) == ("interrupted", 20, b + 20, 130)
    assert f"resume with --from {b + 20} --to {b + 29}" in stopped.lines()[-1]
    assert places(run, log) == Counter(range(b, b + 20)), "the batches in hand, whole"
    rest = run(replay(request(hubs, stopped.next_sequence, b + 29)))
    assert (rest.outcome, rest.archived_now) == ("complete", 10)
    assert places(run, log) == each_once(log)


# --------------------------------------------------------------------------- the command line


def test_the_command_shows_a_line_per_batch_and_a_summary_and_exits_0_only_for_a_whole_range(
        run: Any, hubs: EventHubsStandIn, tmp_path: Path) -> None:
    log = publish(run, hubs, [telemetry(0), telemetry(1, metrics={"x": 1}), *(telemetry(n) for n in range(2, 25))])
    b = log.first_sequence
    code, out = run(command("--from", str(b), "--to", str(b + 24), "--batch-size", "10", hubs=hubs))
    assert code == 0, out
    assert [line.split(":")[0] for line in out if line[:1].isdigit()] == [
        f"{b}-{b + 9}", f"{b + 10}-{b + 19}", f"{b + 20}-{b + 24}"]
    assert summary_of(out) == {"events read": "25 of 25", "archived now": "24", "already archived": "0",
                               "dead-lettered": "1"}
    assert any(line.strip().startswith("1  ") and "timestamp" in line for line in out), "the reason, counted"
    assert "complete: the whole range was read" in out

    settings = tmp_path / "local.settings.json"  # what azd provision writes, with the app's settings
    settings.write_text(json.dumps({"Values": {"DataStorage": os.environ["DataStorage"],
                                               "EventHubConnection": hubs.connection_string}}))
    code, out = run(command("--from", str(b + 20), "--to", str(b + 30), "--settings", str(settings), hubs=None))
    assert code == 1 and any("past the end" in line for line in out), out
    code, out = run(command("--from", str(b), "--to", str(b + 24), "--stream", "inference", hubs=hubs))
    assert code == 2 and any("is the telemetry hub" in line for line in out), out
    assert places(run, log) == each_once(log)


def test_ctrl_c_stops_the_command_between_batches_and_names_where_to_resume(
        run: Any, hubs: EventHubsStandIn) -> None:
    log = publish(run, hubs, [telemetry(n) for n in range(400)])
    b = log.first_sequence
    code, out = run(command("--from", str(b), "--to", str(b + 399), "--batch-size", "10", hubs=hubs,
                            interrupt_after=f"{b}-"))
    assert code == 130, out
    resume = next(line for line in out if "resume with" in line).split()
    first = int(resume[resume.index("--from") + 1])
    assert b + 10 <= first < b + 400 and summary_of(out)["events read"] == f"{first - b} of 400"
    assert places(run, log) == Counter(range(b, first)), "what it read, whole; nothing after"
    code, out = run(command("--from", str(first), "--to", str(b + 399), hubs=hubs))
    assert code == 0, out
    assert places(run, log) == each_once(log)


async def command(*args: str, hubs: EventHubsStandIn | None,
                  interrupt_after: str | None = None) -> tuple[int, list[str]]:
    """``python -m tools.replay --hub telemetry --partition P *args`` against the stand-in
    and the session's Azurite (``hubs`` None: no setting in the environment), stdout a
    pipe, so plain lines; its exit code and its output; with ``interrupt_after``, SIGINT
    once a line starts with it."""
    environment = {"PATH": os.environ["PATH"]}
    if hubs is not None:
        environment |= {"DataStorage": os.environ["DataStorage"], "EventHubConnection": hubs.connection_string}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.replay", "--hub", "telemetry", "--partition", PARTITION, *args, cwd=ROOT,
        env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):
            while line := (await process.stdout.readline()).decode():
                lines.append(line.rstrip("\n"))
                if interrupt_after is not None and line.startswith(interrupt_after):
                    process.send_signal(signal.SIGINT)
                    interrupt_after = None
            return await process.wait(), lines
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def summary_of(out: list[str]) -> dict[str, str]:
    """The summary's counts by name."""
    names = ("events read", "archived now", "already archived", "dead-lettered")
    return {name: line.strip()[len(name):].strip() for line in out for name in names
            if line.strip().startswith(name)}


async def _dead_letter_names() -> list[str]:
    container = await data_store().container(DEADLETTER_CONTAINER)
    return [blob.name async for blob in container.list_blobs(name_starts_with="telemetry/")]


def _name_of(log: Partition, sequence: int) -> str:
    """The blob of the last retry's dead letter of event ``sequence``, by the id
    :func:`tools.replay.replaying.supersede` computes."""
    from shared.platform.deadletter import blob_name, dead_letter_id
    from shared.streams.batch import Origin

    event = log.log[sequence - log.first_sequence]
    origin = Origin(log.hub, log.partition_id, sequence, str(event.offset), event.enqueued)
    return blob_name("telemetry", dead_letter_id(body=event.body, origin={"eventHub": origin.to_json()},
                                                 day=event.enqueued))


def test_the_summary_counts_messages_and_says_where_to_resume() -> None:
    summary = Summary(Request("telemetry", "0", 100, 199, "telemetry"), read=40, archived_now=30, already_archived=8,
                      dead_lettered=Counter({"a": 1, "b": 1}), outcome="failed", problem="storage went away")
    assert summary.lines()[1:5] == ["  events read               40 of 100", "  archived now              30",
                                    "  already archived           8", "  dead-lettered              2"]
    assert summary.lines()[-2:] == ["failed: storage went away", "the range is not whole: resume with --from 140 "
                                                                 "--to 199"]
    assert summary.exit_code == 1
    nothing = Summary(summary.request, outcome="stalled", problem="no answer")
    assert nothing.lines()[-2:] == ["stalled: no answer", "nothing of the range was ingested"]
