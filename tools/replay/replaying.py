"""The replay of a range: each batch read through the function's ingest code as the host
hands it (retried), then the last retry's dead letters of its events, now archived,
marked redriven; the summary counts what each batch did."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from standins.eventhub_factory import Published, host_batch
from tools.replay.model import ReplayError, Request, Summary
from tools.replay.progress import Progress
from tools.replay.reading import batches, check_range, consumer, namespace_of, said

if TYPE_CHECKING:
    from standins.eventhub_factory import Batch

# The reason the last retry gives a batch it dead-letters (shared/streams/batch.py, give_up).
GIVE_UP_REASON = "internal: not processed after the last retry"
# Why 3 attempts, 5 and 10 s apart: each storage request is already retried twice within
# seconds (shared/platform/storage.py); what outlasts two more tries is no blip, and the
# replay stops and names where to resume rather than wait as the function would.
INGEST_ATTEMPTS = 3
INGEST_BACKOFF_SECONDS = 5.0


async def ingest_batch(request: Request, records: Sequence[Published], namespace: str) -> Any:
    """``records`` through the function's code, as the host hands them; retried
    :data:`INGEST_ATTEMPTS` times (every step is idempotent)."""
    from shared.streams.service import ingest

    batch = host_batch(records, hub=request.hub, partition_id=request.partition, namespace=namespace,
                       consumer_group=request.consumer_group)
    for attempt in range(INGEST_ATTEMPTS):
        try:
            return batch, await ingest(request.stream, batch)
        except Exception as error:  # noqa: BLE001 - whatever fails the function is retried, as the host would
            span = f"{records[0].sequence_number}-{records[-1].sequence_number}"
            if attempt == INGEST_ATTEMPTS - 1:
                raise ReplayError("failed", f"ingesting {span} failed {INGEST_ATTEMPTS} times: "
                                            f"{type(error).__name__}: {error}") from None
            logging.getLogger(__name__).warning("ingesting %s failed (%s), trying again", span, error)
            await asyncio.sleep(INGEST_BACKOFF_SECONDS * 2 ** attempt)
    raise AssertionError("unreachable")


async def supersede(stream: str, batch: Batch) -> int:
    """Mark the last retry's dead letters of the events of ``batch`` redriven: the
    archive holds those events now that ingest returned, so each message keeps one
    place (a dead letter marked ``redrivenAt`` is history, never redriven again). One
    point read per event, by the id the dead letter has (:func:`dead_letter_id`); a
    bad message's dead letter, rewritten with its validation reason, is left as it is.
    Returns how many were marked."""
    from datetime import UTC, datetime

    from shared.deadletters.store import mark_redriven, read
    from shared.platform.deadletter import dead_letter_id
    from shared.platform.storage import data_store
    from shared.streams.batch import origin_of, partition_context

    context = partition_context(batch)
    hub, partition = str(context["EventHubName"]), str(context["PartitionId"])
    now = datetime.now(UTC)
    store = data_store()
    marked = 0
    for event in batch:
        origin = origin_of(event, hub=hub, partition=partition, now=now)
        letter_id = dead_letter_id(body=event.get_body(), origin={"eventHub": origin.to_json()},
                                   day=origin.enqueued_time)
        stored = await read(store, stream, letter_id)
        if stored is None or "redrivenAt" in stored.document:
            continue
        if str(stored.document.get("reason", "")).startswith(GIVE_UP_REASON) and await mark_redriven(
                store, stored, now):
            marked += 1
    return marked


async def replay(request: Request, *, progress: Progress | None = None, stop: asyncio.Event | None = None,
                 client_factory: Callable[[Request], tuple[Any, Any]] = consumer) -> Summary:
    """Replay ``request``'s range; never raises for what goes wrong with the range (the
    summary's outcome and problem say it)."""
    summary = Summary(request)
    stop = stop or asyncio.Event()
    if progress:
        progress.started(summary)
    client, credential = client_factory(request)
    try:
        try:
            properties = await asyncio.wait_for(client.get_partition_properties(request.partition), request.wait)
        except TimeoutError:
            raise ReplayError("stalled", f"no answer from {request.hub} within {request.wait:g} s (--wait)") from None
        except Exception as error:  # noqa: BLE001 - the SDK's errors, a refused sign-in, ...: said, not raised
            raise ReplayError("failed", f"reading the properties of {request.hub} partition {request.partition} "
                                        f"failed: {said(error, request)}") from None
        check_range(request, properties)
        namespace = namespace_of(request)
        async with contextlib.aclosing(batches(client, request, stop)) as reading:
            async for records in reading:
                if stop.is_set():
                    break  # read, not ingested: the replay resumes at them
                await _ingest(summary, request, records, namespace, progress)
        if summary.next_sequence <= request.last:
            raise ReplayError("interrupted", "stopped by Ctrl-C after the batch in hand")
    except ReplayError as error:
        summary.outcome, summary.problem = error.outcome, str(error)
    finally:
        with contextlib.suppress(Exception):  # closed already, when it was read
            await client.close()
        if credential is not None:
            await credential.close()
    if progress:
        progress.finished(summary)
    return summary


async def _ingest(summary: Summary, request: Request, records: list[Published], namespace: str,
                  progress: Progress | None) -> None:
    batch, report = await ingest_batch(request, records, namespace)
    summary.superseded += await supersede(request.stream, batch)
    summary.read += len(records)
    summary.batches += 1
    summary.archived_now += report.archived
    summary.already_archived += report.accepted - report.archived
    summary.dead_lettered.update(report.rejected)
    if progress:
        progress.batch(summary, records[0].sequence_number, records[-1].sequence_number)
