"""Storage, not a process's memory, decides what is archived: two worker processes on
one partition, handovers in the middle of a range, replays below, across and above
what is archived, and last retries that fail after the archive (issue 15, 1-3)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.platform.storage import data_store
from shared.streams.ledger import Blob, Ledger, runs
from standins.eventhub_factory import Partition
from standins.invoke import retry_policy
from tests.support.harness import failing_requests
from tests.support.ledger import fleet_log
from tests.support.streams import START, archived, dead_letters, device, hub, ingest, places, telemetry

pytestmark = pytest.mark.usefixtures("app_env")
ROOT = Path(__file__).resolve().parent.parent


# Another worker process: delivers a range of the same partition to telemetry_ingest
# through the worker runtime, against the same Azurite.
OTHER_WORKER = r"""
import asyncio, json, sys
from tests.support.ledger import fleet_log
from standins.invoke import InvocationContext, user_function
from datetime import datetime
name, first, count, start, stop, prefix, when = json.loads(sys.argv[1])
log = fleet_log(name, first, count, prefix, datetime.fromisoformat(when))
async def main():
    from shared.platform.storage import reset_data_store
    try:
        await user_function("telemetry_ingest")(log.deliver(range(start, stop)), InvocationContext("telemetry_ingest"))
    finally:
        await reset_data_store()
asyncio.run(main())
print("delivered")
"""


def other_worker(name: str, first: int, count: int, start: int, stop: int, prefix: str = "h") -> None:
    result = subprocess.run([sys.executable, "-c", OTHER_WORKER,
                             json.dumps([name, first, count, start, stop, prefix, START.isoformat()])],
                            cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and "delivered" in result.stdout, result.stderr[-3000:]


def test_a_handover_to_another_process_and_back_archives_each_event_once(run: Any) -> None:
    log = fleet_log("handover", 4990, 40)
    ingest(run, "telemetry", log.deliver(range(4990, 5000)))  # this process owns the partition
    other_worker("handover", 4990, 40, 5000, 5020)  # the partition moves to another process ...
    ingest(run, "telemetry", log.deliver(range(5010, 5030)))  # ... and back, while this one remembers 4999
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(4990, 5030)})
    assert len(archived(run, log)) == 40


def newest_state(log: Partition, delivered: set[int], prefix: str) -> dict[str, dict[str, Any]]:
    """Per device, the metrics of the newest message delivered (fleet_log's devices)."""
    first = log.first_sequence
    newest = {f"{prefix}{d}": max(n for n in delivered if (n - first) % 5 == d)
              for d in range(5) if any((n - first) % 5 == d for n in delivered)}
    return {dev: {"seq": n - first} for dev, n in newest.items()}


def test_latest_state_holds_across_a_handover_to_another_process_and_back_on_a_stale_memory(run: Any) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    log = fleet_log("state-handover", 7000, 60, prefix)
    ingest(run, "telemetry", log.deliver(range(7000, 7020)))  # this process owns the partition, its rows cached
    other_worker("state-handover", 7000, 60, 7020, 7040, prefix)  # another process writes newer state ...
    ingest(run, "telemetry", log.deliver(range(7010, 7030)))  # ... and a redelivery here meets it: older, kept out
    assert {d: device(run, d)["telemetry"]["metrics"] for d in newest_state(log, set(range(7000, 7040)), prefix)} \
        == newest_state(log, set(range(7000, 7040)), prefix)
    ingest(run, "telemetry", log.deliver(range(7040, 7060)))  # newer again, on rows the memory had wrong
    assert {d: device(run, d)["telemetry"]["metrics"] for d in newest_state(log, set(range(7000, 7060)), prefix)} \
        == newest_state(log, set(range(7000, 7060)), prefix)


def test_a_replay_below_what_is_archived_fills_the_gap(run: Any) -> None:
    log = hub()
    log.publish([telemetry("gap", n) for n in range(20)])
    ingest(run, "telemetry", log.deliver(range(1010, 1020)))
    ingest(run, "telemetry", log.deliver(range(1000, 1010)))  # the range a last retry had left out, replayed
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(1000, 1020)})


def test_a_range_the_last_retry_dead_lettered_is_archived_by_a_later_replay(run: Any) -> None:
    log = hub()
    log.publish([telemetry("retry", n) for n in range(20)])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with failing_requests(run, "PUT", "/devstoreaccount1/telemetry/", times=100):
        ingest(run, "telemetry", log.deliver(range(1000, 1010)), retry_count=last)  # dead-lettered: no archive
    ingest(run, "telemetry", log.deliver(range(1010, 1020)))
    assert sorted(d["eventHub"]["sequenceNumber"] for d in dead_letters(run, log)) == list(range(1000, 1010))
    ingest(run, "telemetry", log.deliver(range(995 + 5, 1015)))  # the operator replays across the gap
    lines = Counter(line["eventHub"]["sequenceNumber"] for line in archived(run, log))
    assert lines == Counter(range(1000, 1020)), "each archived once, the gap filled"


def test_a_last_retry_that_fails_after_archiving_dead_letters_nothing(run: Any) -> None:
    log = hub()
    log.publish([telemetry(f"late-{n % 3}", n) for n in range(30)])
    last = int(retry_policy("telemetry_ingest")["max_retry_count"])
    with failing_requests(run, "POST", "/$batch", times=1000) as failed:  # latest state fails, every time
        ingest(run, "telemetry", log.deliver(), retry_count=last)  # archived, then the state write fails
    assert failed, "the latest state was written and failed"
    assert dead_letters(run, log) == []
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(1000, 1030)})


def test_two_deliveries_at_once_of_overlapping_ranges_archive_each_event_once(run: Any) -> None:
    import asyncio

    from standins.invoke import InvocationContext, user_function

    log = hub()
    log.publish([telemetry(f"race-{n % 4}", n) for n in range(60)])
    handler = user_function("telemetry_ingest")

    async def both() -> tuple[Any, ...]:
        return await asyncio.gather(
            handler(log.deliver(range(1000, 1040)), InvocationContext("telemetry_ingest")),
            handler(log.deliver(range(1020, 1060)), InvocationContext("telemetry_ingest")),
            return_exceptions=True)

    outcomes = run(both())
    for outcome, stop in zip(outcomes, (1040, 1060), strict=True):
        if isinstance(outcome, BaseException):  # it lost the race for its announced blob: the host retries
            assert "settled by another instance" in str(outcome) or "changed" in str(outcome), outcome
            ingest(run, "telemetry", log.deliver(range(stop - 40, stop)))
    assert places(run, log) == Counter({(seq, None): 1 for seq in range(1000, 1060)})


# --- property: any deliveries by two processes' memories, in any order ----------------

def deliver_as_two_processes(run: Any, data: st.DataObject, log: Partition) -> set[int]:
    """One to six ranges of ``log``'s events 1000-1039 delivered, each by one of two
    processes, each with its own memory (the store's caches, deep-copied apart, so each
    may be stale); the sequence numbers delivered."""
    memories: list[dict[Any, Any]] = [{}, {}]
    delivered: set[int] = set()
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        start = data.draw(st.integers(min_value=1000, max_value=1039))
        stop = data.draw(st.integers(min_value=start + 1, max_value=min(1040, start + 25)))
        who = data.draw(st.integers(min_value=0, max_value=1))
        store = data_store()
        store.caches.clear()
        store.caches.update(copy.deepcopy(memories[who]))
        ingest(run, "telemetry", log.deliver(range(start, stop)))
        memories[who] = copy.deepcopy(store.caches)
        delivered |= set(range(start, stop))
    return delivered


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_deliveries_by_two_processes_place_each_event_once(run: Any, data: st.DataObject) -> None:
    """Each step delivers a range as one of two processes, each with its own memory of
    the ledger (kept apart by swapping the store's memory), so each may be stale."""
    log = hub()
    log.publish([telemetry(f"q{n % 3}", n) for n in range(40)])
    delivered = deliver_as_two_processes(run, data, log)
    assert places(run, log) == Counter({(seq, None): 1 for seq in delivered})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_deliveries_by_two_processes_leave_each_device_its_newest_state(run: Any, data: st.DataObject) -> None:
    """As above, for the latest state: each process's memory of the partition's rows
    (deep-copied apart) may be stale; storage's ETags decide."""
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    log = fleet_log(f"state-{prefix}", 1000, 40, prefix)
    delivered = deliver_as_two_processes(run, data, log)
    for dev, metrics in newest_state(log, delivered, prefix).items():
        assert device(run, dev)["telemetry"]["metrics"] == metrics, dev


# --- the ledger's decisions, pure ---------------------------------------------------

def test_runs_never_join_numbers_a_delivery_did_not_hold() -> None:
    assert runs([5, 3, 4, 9, 10, 12]) == [(3, 5), (9, 10), (12, 12)]


def test_the_ledger_folds_old_blobs_into_ranges_and_keeps_gaps_open() -> None:
    ledger = Ledger()
    for n in range(100):
        ledger = ledger.with_intents([Blob(n * 10, n * 10 + 9, f"b{n}")])
        ledger = ledger.settled([Blob(n * 10, n * 10 + 9, f"b{n}")])
    assert len(ledger.blobs) == 64 and ledger.spans == ((0, 359),)
    assert all(ledger.archived(s) for s in range(1000)) and not ledger.archived(1000)
    gapped = Ledger(spans=((0, 9), (20, 29)))
    assert not gapped.archived(15) and gapped.archived(25)
    assert Ledger.from_row(gapped.to_row("h-1-"), "h-1-") == gapped


def test_a_row_of_the_chain_before_the_ledger_reads_as_all_archived_up_to_its_watermark() -> None:
    ledger = Ledger.from_row({"lastSequence": "4999"}, "h-1-")
    assert ledger.archived(0) and ledger.archived(4999) and not ledger.archived(5000)


def test_too_many_gaps_fold_the_oldest_and_the_worst_row_stays_below_32_k_characters() -> None:
    from shared.streams.ledger import MAX_INTENTS, MAX_SPANS, RECENT_BLOBS

    top = 2 ** 63 - 1  # sequence numbers are 64-bit: the longest ranges are 19 digits twice
    prefix = "h" * 256 + "-31-"  # an Event Hub name of 256 characters, partition 31
    spans = tuple((top - 10 * n - 5, top - 10 * n) for n in range(MAX_SPANS, 0, -1))
    name = f"2026/11/20/08/{prefix}{top:020d}-{10 ** 8 - 1:08d}.jsonl"
    ledger = Ledger(spans=spans, blobs=tuple(Blob(top - n, top - n, name) for n in range(RECENT_BLOBS)),
                    intents=tuple(Blob(top - n, top - n, name) for n in range(MAX_INTENTS)), generation=10 ** 8 - 1)
    row = ledger.to_row(prefix)["ledger"]
    assert len(row) < 32 * 1024, "a string property holds 32 K UTF-16 characters"
    assert Ledger.from_row({"ledger": row}, prefix) == ledger
    more = ledger.settled([Blob(5, 5, "")])  # one range more than it keeps apart
    assert len(more.spans) == MAX_SPANS and more.folded == ((6, spans[0][0] - 1),)
