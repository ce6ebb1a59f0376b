"""One Event Hub batch of telemetry or inference, end to end.

1. Decode every event (pure; an unexpected error in deciding about one event
   dead-letters that event with an ``internal`` reason, never the batch).
2. Dead-letter each rejected body or array element, with its reason, errors,
   original bytes and origin (idempotent: named by a hash of origin and bytes).
3. Archive the accepted messages not archived yet, exactly once
   (:mod:`shared.streams.archive`).
4. Add each archive blob of inference results to the model statistics, once.
5. Write the latest state of each device, coalesced (newer wins).
6. Raise alerts by the rules (deterministic ids) and forward them to the alerts hub.
7. Record how far the archive reaches.

Every step is idempotent, so a failure anywhere fails the invocation (the host
retries it with the function's retry policy) and the redelivery, whatever its
boundaries, repeats nothing. On the last retry the whole batch goes to dead
letters instead, so the partition moves on without losing it; if even that
fails, the hub, partition and sequence range are logged for a replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.alerts.models import Alert
from shared.alerts.store import AlertStore
from shared.platform import metrics
from shared.platform.storage import DataStore, data_store
from shared.platform.storage_names import INFERENCE_CONTAINER, TELEMETRY_CONTAINER
from shared.streams.archive import Archive, Segment
from shared.streams.batch import Event, dead_letter, give_up, last_attempt, partition_context, read_batch
from shared.streams.decode import Accepted, Rejected
from shared.streams.envelopes import Stream
from shared.streams.limits import StreamLimits
from shared.streams.settings import StreamSettings
from shared.streams.state import coalesce_inference, coalesce_telemetry, write_latest
from shared.streams.stats import add_blob

log = logging.getLogger(__name__)


@dataclass
class Forwarded:
    """The alerts this process sent to the alerts hub, by id: a redelivery that raises
    them again does not send them again (another process might: at least once).
    Bounded: 100 000 ids of 32 characters take about 10 MB."""

    ids: set[str] = field(default_factory=set)

    def add(self, ids: Iterable[str]) -> None:
        if len(self.ids) >= 100_000:
            self.ids.clear()
        self.ids.update(ids)


@dataclass
class Report:
    """What one invocation did, for logs, the demo and the tests."""

    events: int = 0
    accepted: int = 0
    archived: int = 0
    rejected: list[str] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


async def ingest(stream: Stream, events: Sequence[Any], *, retry_count: int = 0, max_retry_count: int = 0,
                 now: datetime | None = None, redriven: str | None = None) -> Report:
    """Handle one batch of one partition (``func.EventHubEvent`` objects). Any failure,
    a bad setting included, fails the invocation for the host to retry, except on the
    last attempt, which never raises (:func:`_give_up`)."""
    from shared.platform.settings import settings_of

    now = now or datetime.now(UTC)
    hub: str | None = None
    if retry_count:
        metrics.record(metrics.RETRIED, 1, stream=stream)
    try:
        settings = settings_of(StreamSettings)
        hub = settings.telemetry_hub_name if stream == "telemetry" else settings.inference_hub_name
        limits = StreamLimits(max_future_skew=float(settings.max_future_seconds))
        store = data_store()
        batch = read_batch(stream, events, hub=hub, limits=limits, now=now)
        with metrics.batch():
            return await _handle(store, stream, batch, now, redriven)
    except Exception as exc:
        if not last_attempt(retry_count, max_retry_count):
            raise  # the host retries the batch (the function's retry policy)
        return await _give_up(stream, events, exc, hub, now)


async def _handle(store: DataStore, stream: Stream, batch: list[Event], now: datetime,
                  redriven: str | None = None) -> Report:
    report = Report(events=len(batch))
    accepted = [r for e in batch for r in e.results if isinstance(r, Accepted)]
    report.accepted = len(accepted)
    rejections = [(e.origin, r) for e in batch for r in e.results if isinstance(r, Rejected)]
    await asyncio.gather(*(dead_letter(store, stream, origin, r, now) for origin, r in rejections))
    report.rejected = [r.reason for _, r in rejections]
    archive = _archive(store, stream)
    segments = await archive.append(batch, redriven=redriven)
    report.archived = sum(_lines_in(batch, s) for s in segments if s.created)
    if stream == "inference":
        for segment in (s for s in segments if s.name):  # a run without accepted messages has no blob
            await add_blob(store, hub=batch[0].origin.hub, partition=batch[0].origin.partition,
                           blob=segment.name, lines=await _lines(archive, batch, segment))
        await write_latest(store, *_where(batch), {}, coalesce_inference(accepted))
    else:
        await write_latest(store, *_where(batch), coalesce_telemetry(accepted), {})
    report.alerts = await _alerts(store, stream, accepted, now)
    if batch and redriven is None:  # a redrive reads dead letters, not a partition
        partition = batch[0].origin.partition
        metrics.record(metrics.ARCHIVED, report.archived, stream=stream, partition=partition)
        metrics.record(metrics.REDELIVERED, report.accepted - report.archived, stream=stream, partition=partition)
        newest = max(e.origin.enqueued_time for e in batch)
        metrics.record(metrics.LAG, max(0.0, (now - newest).total_seconds()), stream=stream, partition=partition)
    return report


def _where(batch: list[Event]) -> tuple[str, str]:
    """The batch's hub and partition (an Event Hub batch is one partition's)."""
    return (batch[0].origin.hub, batch[0].origin.partition) if batch else ("", "")


def _archive(store: DataStore, stream: Stream) -> Archive:
    return Archive(store, stream, TELEMETRY_CONTAINER if stream == "telemetry" else INFERENCE_CONTAINER)


def _covered(batch: list[Event], segment: Segment) -> list[Event]:
    return [e for e in batch if segment.first <= e.origin.sequence_number <= segment.last]


def _lines_in(batch: list[Event], segment: Segment) -> int:
    return sum(1 for e in _covered(batch, segment) for r in e.results if isinstance(r, Accepted))


async def _lines(archive: Archive, batch: list[Event], segment: Segment) -> list[dict[str, Any]]:
    """The archive lines of ``segment``: ours when this batch holds all its events,
    else read back from the blob that an earlier delivery wrote."""
    covered = _covered(batch, segment)
    if covered and covered[0].origin.sequence_number == segment.first and \
            covered[-1].origin.sequence_number == segment.last:
        return [r.archive for e in covered for r in e.results if isinstance(r, Accepted)]
    return await archive.read(segment)


async def _alerts(store: DataStore, stream: Stream, accepted: list[Accepted], now: datetime) -> list[Alert]:
    """Alerts by the rules, stored (ids derived from device, rule and cooldown
    bucket, so a storm or a redelivery stores one) and forwarded to the alerts hub."""
    from shared.alerts.forward import forward
    from shared.alerts.rules import distinct, inference_alerts, telemetry_alerts
    from shared.alerts.settings import AlertSettings
    from shared.platform.settings import settings_of

    rules = settings_of(AlertSettings).rules
    evaluate = telemetry_alerts if stream == "telemetry" else inference_alerts
    alerts = distinct(alert for r in accepted for alert in evaluate(rules, r.device_id, r.message, now))  # type: ignore[arg-type]
    if not alerts:
        return []
    for alert in await AlertStore(store).add(alerts):
        log.warning("alert %s on %r: %s", alert.rule, alert.device_id, alert.message)
    # Forward every alert raised, new or not, unless this process already sent it:
    # an earlier attempt may have stored an alert and failed before sending it.
    forwarded = store.cache(Forwarded)
    unsent = [a for a in alerts if a.alert_id not in forwarded.ids]
    await forward(unsent)
    forwarded.add(a.alert_id for a in unsent)
    return alerts


async def _give_up(stream: Stream, events: Sequence[Any], exc: Exception, hub: str | None, now: datetime) -> Report:
    """The last retry failed: every event of the batch that the archive does not hold
    (as its ledger says now) to dead letters, whole; never raises. Events the archive
    holds are not dead-lettered: what failed after them (latest state, statistics,
    alerts) is logged."""
    context = partition_context(events)
    try:
        archived = await _archive(data_store(), stream).archived(
            str(context.get("EventHubName") or hub or stream), str(context.get("PartitionId", "0")),
            [e.sequence_number for e in events if e.sequence_number is not None])
    except Exception:  # noqa: BLE001 - storage or settings are what failed: take nothing as archived
        archived = set()
    if archived and all(e.sequence_number in archived for e in events):
        log.error("the last retry of %s events %s failed after the archive held them all; their latest state, "
                  "statistics or alerts may be missing (stored alerts stay listed by list_alerts): %r", stream,
                  context, exc)
        return Report()
    rest = [e for e in events if e.sequence_number not in archived]
    written = await give_up(stream, rest, exc, hub=hub, now=now)
    reason = f"internal: not processed after the last retry ({type(exc).__name__})"
    return Report(events=len(rest), rejected=[reason] * written)
