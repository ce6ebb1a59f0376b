"""Redrive: one dead letter through its stream's pipeline again, at most once.

The message goes in as it first arrived: its original bytes, and for Event Hubs
streams its origin (hub, partition, sequence number, offset, enqueued time), so the
pipeline decides as it would have (a timestamp is checked against the enqueued time,
not today), names a second rejection's dead letter alike, and places an accepted
message by its origin (:mod:`shared.streams.archive`):

- telemetry, inference: :func:`shared.streams.service.ingest`, one event;
- command-responses: :func:`shared.commands.responses.handle_responses`, one event;
- lifecycle: :func:`shared.lifecycle.service.handle_lifecycle_event` with the event
  rebuilt from the stored envelope by azure-functions' own Event Grid converter,
  then the device's pending commands delivered when it is connected, as
  ``client_lifecycle`` does. The registry is order-free, so a late event is applied
  as if it had come in time.

Exactly once, by conditional writes on the dead letter's blob (its ETag):

1. read it; a ``redrivenAt`` means done (its index row is brought in line);
2. claim it: metadata naming the run, written only if the blob is as read, so of
   two runs one gets it; a claim older than :data:`CLAIM_TTL` (a run that died) is
   taken over;
3. send it; a pipeline that rejects it again rewrites the blob (new reason, new
   ETag, claim gone): it stays, unmarked, with its new reason;
4. mark it: ``redrivenAt`` written only if the blob is still as claimed, then in
   its index row.

A run that dies between 3 and 4 leaves a claim that goes stale; the next run sends
the message again, which the pipelines make harmless: the archive holds a message
once per origin, the latest state keeps the newest value, alerts and command
answers are idempotent.

An element of an array body (``position``) is not redriven: an Event Hubs event has
no position, and the pipeline reads none, so the element would come back as a
message of its own, archived without its position or, if rejected again,
dead-lettered under another name than its first dead letter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from shared.deadletters.store import CLAIM, CLAIMED_AT, Stored, claim, mark_redriven, mirror, read, release
from shared.platform.deadletter import body_of
from shared.platform.storage import DataStore

log = logging.getLogger(__name__)

# A claim older than this belongs to a run that died: sending one dead letter takes
# well under a second, and a storage outage fails it within the SDK's retries (about
# a minute), so ten minutes never cut a live run short.
CLAIM_TTL = timedelta(minutes=10)
EVENT_HUBS_STREAMS = ("telemetry", "inference", "command-responses")


class Outcome(StrEnum):
    REDRIVEN = "redriven"
    REJECTED_AGAIN = "rejected again"
    ALREADY = "already redriven"
    BUSY = "held by another run"
    NOT_REDRIVABLE = "not redrivable"
    GONE = "gone"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    detail: str = ""  # the new reason, why not redrivable, or what failed


# --------------------------------------------------------------------------- decisions (pure)


def not_redrivable(stream: str, document: dict[str, Any]) -> str | None:
    """Why this dead letter cannot go through its pipeline again; None when it can."""
    if stream in EVENT_HUBS_STREAMS:
        origin = document.get("eventHub")
        if not isinstance(origin, dict) or origin.get("sequenceNumber") is None:
            return "it has no Event Hubs origin"
        if origin.get("position") is not None:
            return (f"it is an element of an array body (position {origin['position']}), and the pipeline reads "
                    "no position from an event")
    elif "eventGrid" not in document:
        return "it has no Event Grid origin"
    return None


def holder(metadata: dict[str, str], now: datetime) -> str | None:
    """The run that holds a dead letter by a live claim; None when none does."""
    run, at = metadata.get(CLAIM), metadata.get(CLAIMED_AT)
    if not run or not at:
        return None
    try:
        claimed = datetime.fromisoformat(at)
    except ValueError:
        return None
    return run if now - claimed < CLAIM_TTL else None


# --------------------------------------------------------------------------- the pipelines


def eventhub_event(document: dict[str, Any]) -> Any:
    """The dead letter as the one event of a batch, as the worker hands it to a
    stream function: its bytes, origin and the batch's ``PartitionContext``."""
    import azure.functions as func
    from azure.functions import meta

    origin = document["eventHub"]
    context = {"EventHubName": origin["hub"], "PartitionId": origin["partitionId"]}
    return func.EventHubEvent(
        body=body_of(document),
        trigger_metadata={"PartitionContext": meta.Datum(type="json", value=orjson.dumps(context).decode())},
        enqueued_time=datetime.fromisoformat(origin["enqueuedTime"]),
        sequence_number=int(origin["sequenceNumber"]), offset=origin.get("offset"))


def lifecycle_event(document: dict[str, Any]) -> Any:
    """The stored envelope as the worker hands it to ``client_lifecycle``."""
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    return EventGridEventInConverter.decode(meta.Datum(type="json", value=body_of(document).decode("utf-8")),
                                            trigger_metadata={})


async def send(stream: str, document: dict[str, Any], dead_letter_id: str) -> bool:
    """Hand the dead letter to its pipeline; False when the pipeline said it rejected
    it again (command responses say nothing: the mark's condition tells)."""
    if stream in ("telemetry", "inference"):
        from shared.streams.service import ingest

        report = await ingest(stream, [eventhub_event(document)], redriven=dead_letter_id)  # type: ignore[arg-type]
        return not report.rejected
    if stream == "command-responses":
        from shared.commands.responses import handle_responses

        await handle_responses([eventhub_event(document)])
        return True
    from shared.commands.service import follow_device
    from shared.lifecycle.service import handle_lifecycle_event

    record = await handle_lifecycle_event(lifecycle_event(document))
    if record is None:
        return False
    await follow_device(record)
    return True


# --------------------------------------------------------------------------- one dead letter


async def redrive_one(store: DataStore, stream: str, dead_letter_id: str, *, run: str,
                      now: datetime | None = None) -> Result:
    """Redrive one dead letter for run ``run`` (see the module)."""
    now = now or datetime.now(UTC)
    stored = await read(store, stream, dead_letter_id)
    if stored is None:
        return Result(Outcome.GONE, "its blob is gone")
    if "redrivenAt" in stored.document:
        await mirror(store, stored)  # a run that died after marking the blob left the row behind
        return Result(Outcome.ALREADY, stored.document["redrivenAt"])
    why = not_redrivable(stream, stored.document)
    if why is not None:
        return Result(Outcome.NOT_REDRIVABLE, why)
    other = holder(stored.metadata, now)
    if other is not None and other != run:
        return Result(Outcome.BUSY, other)
    claimed = await claim(store, stored, run, now)
    if claimed is None:
        return Result(Outcome.BUSY, "another run claimed it first")
    try:
        accepted = await send(stream, claimed.document, dead_letter_id)
    except Exception as exc:
        log.warning("redriving %s/%s failed", stream, dead_letter_id, exc_info=True)
        await release(store, claimed)
        return Result(Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:300])
    if accepted and await mark_redriven(store, claimed, datetime.now(UTC)):
        return Result(Outcome.REDRIVEN)
    return await _after_rejection(store, claimed)


async def _after_rejection(store: DataStore, claimed: Stored) -> Result:
    """The blob changed while the message was sent: say what it holds now."""
    now = await read(store, claimed.stream, claimed.dead_letter_id)
    if now is None:
        return Result(Outcome.GONE, "its blob is gone")
    if "redrivenAt" in now.document:
        return Result(Outcome.ALREADY, now.document["redrivenAt"])
    if now.etag == claimed.etag:  # the pipeline said no but left the blob as it was: give the claim back
        await release(store, claimed)
    return Result(Outcome.REJECTED_AGAIN, str(now.document.get("reason", "")))
