"""The archive: every accepted message in JSON Lines blobs, exactly once per Event
Hubs (hub, partition, sequence number), whatever batches the host delivers, however
often, to however many instances, in whatever order.

Storage decides what is archived: one ledger row per partition in table ``appmeta``
(:mod:`shared.streams.ledger`), written conditionally on its ETag. A delivery reads
it (or remembers it: a partition's owner is its only writer, and a stale memory only
costs a failed write and a read), settles any intent over its events, announces a
blob for each run of its events that nothing holds yet (one ledger write), creates
each blob with ``If-None-Match: *``, and counts them archived in the next ledger
write. Two instances during a lease handover, a redelivery with other boundaries,
or a replay below, across or above what is archived: each event lands in one blob,
and a range that no blob holds (a last retry dead-lettered it) is filled by the
replay that brings it. A run whose messages were all rejected is recorded without a
blob. Steady state: one ledger write and one blob per batch.

Blob: container ``telemetry`` or ``inference``,
``{yyyy}/{MM}/{dd}/{HH}/{hub}-{partition}-{first sequence, 20 digits}-{ledger
generation, 8 digits}.jsonl`` (the hour of the first event's enqueued time; names
sort by sequence within an hour), metadata ``firstsequence``, ``lastsequence``,
``messages``. An empty blob with metadata ``void`` marks an announced write that
another instance settled before it happened; it holds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.platform.storage import DataStore
from shared.platform.storage_names import APP_META_TABLE
from shared.streams.batch import Event
from shared.streams.decode import Accepted
from shared.streams.ledger import MAX_INTENTS, MAX_SPANS, Blob, Ledger, runs
from shared.streams.lines import archive_line

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Segment:
    """One blob of the chain: the sequence numbers it covers, and whether we wrote it."""

    name: str
    first: int
    last: int
    created: bool


def blob_name(event: Event, tail: str) -> str:
    """The archive blob that starts at ``event``: its hour, hub, partition and sequence
    number, then ``tail`` (the ledger's generation, or the dead letter a redrive wrote)."""
    origin = event.origin
    return (f"{origin.enqueued_time:%Y/%m/%d/%H}/{origin.hub}-{origin.partition}-"
            f"{origin.sequence_number:020d}-{tail}.jsonl")


def archive_lines(events: Sequence[Event]) -> bytes:
    """The JSON Lines of the accepted messages of ``events``, each with its origin."""
    return b"".join(archive_line(r, e.origin) + b"\n" for e in events for r in e.results if isinstance(r, Accepted))


@dataclass
class LedgerMemory:
    """The ledger row of each (stream, hub, partition) as this process last wrote or
    read it, with its ETag: a partition's owner reads it once."""

    ledgers: dict[tuple[str, str, str], tuple[Ledger, str | None]] = field(default_factory=dict)


class ArchiveConflict(RuntimeError):
    """Another instance settled this delivery's announced blob before it was written
    (or the ledger kept changing): the invocation fails and the retry starts afresh."""


# Ledger writes tried before the invocation fails (each conflict means another
# instance wrote the same partition's ledger in between: rare outside a handover).
MAX_ATTEMPTS = 6


class Archive:
    def __init__(self, store: DataStore, stream: str, container: str) -> None:
        self._store, self._stream, self._container = store, stream, container

    async def append(self, events: Sequence[Event], *, redriven: str | None = None) -> list[Segment]:
        """Archive what of ``events`` (one partition) nothing holds yet; returns the
        blobs that cover them: written now, or written before and still remembered by
        name (so what depends on a blob can be redone from its lines).

        ``redriven``: the events are a dead letter sent again (its id). One whose
        sequence number the ledger holds was rejected inside a range the archive
        covers, so it gets a blob of its own, named by the dead letter, created once;
        one the ledger does not hold (a last retry dead-lettered its batch) takes the
        ledger's way, so a replay from Event Hubs and a redrive never both archive it."""
        if not events:
            return []
        hub, partition = events[0].origin.hub, events[0].origin.partition
        if redriven is not None:
            self._forget(hub, partition)
            ledger, _ = await self._read(hub, partition)
            written, _void = await self._settle(ledger.intents_over(e.origin.sequence_number for e in events),
                                                void_missing=False)
            ledger = ledger.settled(written)
            held = [e for e in events if ledger.archived(e.origin.sequence_number)]
            rest = [e for e in events if not ledger.archived(e.origin.sequence_number)]
            return await self._append_redriven(held, redriven) + (await self.append(rest) if rest else [])
        sequences = [e.origin.sequence_number for e in events]
        created: list[Blob] = []
        conflicts = 0
        try:
            while True:
                ledger, etag = await self._read(hub, partition)
                written, void = await self._settle(ledger.intents_over(sequences), void_missing=True)
                ledger = ledger.settled(written, void) if written or void else ledger
                pending = [e for e in events if not ledger.archived(e.origin.sequence_number)]
                announced = self._announce(ledger, pending)[:MAX_INTENTS]
                if not (announced or written or void):
                    return _segments(ledger, sequences, created=created)
                # A run without a blob is archived by this ledger write itself.
                ledger = ledger.with_intents([b for b in announced if b.name]).settled(
                    [b for b in announced if not b.name])
                etag = await self._write(hub, partition, ledger, etag)
                if etag is None:  # someone else wrote the ledger: read it again and decide again
                    conflicts += 1
                    if conflicts >= MAX_ATTEMPTS:
                        raise ArchiveConflict(f"the archive ledger of {hub}/{partition} changed {conflicts} times")
                    continue
                await self._create(announced, pending)
                self._remember(hub, partition, ledger.settled(announced), etag)
                created += announced
        except BaseException:
            self._forget(hub, partition)
            raise

    async def _append_redriven(self, events: Sequence[Event], dead_letter_id: str) -> list[Segment]:
        from azure.core.exceptions import ResourceExistsError

        container = await self._store.container(self._container)
        segments = []
        for event in events:
            body = archive_lines([event])
            if not body:
                continue
            sequence = event.origin.sequence_number
            name = blob_name(event, f"deadletter-{dead_letter_id}")
            try:
                await container.upload_blob(name, body, overwrite=False, content_settings=_JSONL(), metadata={
                    "firstsequence": str(sequence), "lastsequence": str(sequence),
                    "messages": str(body.count(b"\n")), "deadletter": dead_letter_id})
                segments.append(Segment(name, sequence, sequence, created=True))
            except ResourceExistsError:
                segments.append(Segment(name, sequence, sequence, created=False))
        return segments

    async def archived(self, hub: str, partition: str, sequences: Sequence[int]) -> set[int]:
        """Which of ``sequences`` the archive holds, as storage says now (for the last
        retry, which dead-letters only the others)."""
        self._forget(hub, partition)
        ledger, _ = await self._read(hub, partition)
        written, _void = await self._settle(ledger.intents_over(sequences), void_missing=False)
        ledger = ledger.settled(written)
        return {s for s in sequences if ledger.archived(s)}

    async def read(self, segment: Segment) -> list[dict[str, Any]]:
        """The lines of a blob written before (to redo what depends on it)."""
        if not segment.name:
            return []
        container = await self._store.container(self._container)
        data = await (await container.download_blob(segment.name)).readall()
        return [orjson.loads(line) for line in data.splitlines() if line]

    # ----------------------------------------------------------------- decisions

    def _announce(self, ledger: Ledger, pending: Sequence[Event]) -> list[Blob]:
        """A blob for each run of consecutive pending events, named by the next
        generation (so no two intents ever share a name); a run without an accepted
        message gets no blob (its events are dead letters only)."""
        by_sequence = {e.origin.sequence_number: e for e in pending}
        generation = ledger.generation + 1
        blobs = []
        for first, last in runs(by_sequence):
            run = [by_sequence[s] for s in range(first, last + 1)]
            has_lines = any(isinstance(r, Accepted) for e in run for r in e.results)
            blobs.append(Blob(first, last, blob_name(run[0], f"{generation:08d}") if has_lines else ""))
        return blobs

    # ----------------------------------------------------------------- I/O

    async def _create(self, announced: Sequence[Blob], pending: Sequence[Event]) -> None:
        from azure.core.exceptions import ResourceExistsError

        container = await self._store.container(self._container)
        for blob in announced:
            if not blob.name:
                continue
            body = archive_lines([e for e in pending if blob.covers(e.origin.sequence_number)])
            try:
                await container.upload_blob(
                    blob.name, body, overwrite=False, content_settings=_JSONL(),
                    metadata={"firstsequence": str(blob.first), "lastsequence": str(blob.last),
                              "messages": str(body.count(b"\n"))})
            except ResourceExistsError as exc:
                raise ArchiveConflict(f"{blob.name} was settled by another instance before it was written") from exc

    async def _settle(self, intents: Sequence[Blob], *, void_missing: bool) -> tuple[list[Blob], list[Blob]]:
        """Each intent is a blob that exists (written) or, with ``void_missing``, one
        made impossible by creating its name empty first (void)."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        container = await self._store.container(self._container)
        written: list[Blob] = []
        void: list[Blob] = []
        for intent in intents:
            if not intent.name:
                written.append(intent)  # nothing to write: the ledger write was all of it
                continue
            client = container.get_blob_client(intent.name)
            try:
                properties = await client.get_blob_properties()
            except ResourceNotFoundError:
                if not void_missing:
                    continue
                try:
                    await client.upload_blob(b"", overwrite=False, metadata={
                        "firstsequence": str(intent.first), "lastsequence": str(intent.last), "messages": "0",
                        "void": "true"})
                    void.append(intent)
                    continue
                except ResourceExistsError:
                    properties = await client.get_blob_properties()  # its writer won the race: it is written
            (void if properties.metadata.get("void") == "true" else written).append(intent)
        return written, void

    def _key(self, hub: str, partition: str) -> tuple[str, str, str]:
        return self._stream, hub, partition

    def _remember(self, hub: str, partition: str, ledger: Ledger, etag: str) -> None:
        self._store.cache(LedgerMemory).ledgers[self._key(hub, partition)] = (ledger, etag)

    def _forget(self, hub: str, partition: str) -> None:
        self._store.cache(LedgerMemory).ledgers.pop(self._key(hub, partition), None)

    async def _read(self, hub: str, partition: str) -> tuple[Ledger, str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        remembered = self._store.cache(LedgerMemory).ledgers.get(self._key(hub, partition))
        if remembered is not None:
            return remembered
        table = await self._store.table(APP_META_TABLE)
        try:
            entity = await table.get_entity(f"archive|{self._stream}", f"{hub}|{partition}")
        except ResourceNotFoundError:
            return Ledger(), None
        return Ledger.from_row(dict(entity), f"{hub}-{partition}-"), str(entity.metadata["etag"])

    async def _write(self, hub: str, partition: str, ledger: Ledger, etag: str | None) -> str | None:
        """The ledger, if the row is still as read; None when another writer changed it."""
        from shared.platform.rows import backoff, write_if_unchanged

        if ledger.folded:
            log.error("the archive ledger of %s %s/%s holds more than %d ranges: the oldest gaps %s are closed, so "
                      "a replay into them is taken as archived", self._stream, hub, partition, MAX_SPANS,
                      ledger.folded)
        table = await self._store.table(APP_META_TABLE)
        row = {"PartitionKey": f"archive|{self._stream}", "RowKey": f"{hub}|{partition}",
               **ledger.to_row(f"{hub}-{partition}-")}
        written = await write_if_unchanged(table, row, etag)
        if written is None:
            self._forget(hub, partition)
            await backoff(0, step=0.02)
        return written


def _segments(ledger: Ledger, sequences: Sequence[int], *, created: Sequence[Blob]) -> list[Segment]:
    """The blobs that cover ``sequences``: those ``created`` now, and earlier ones the
    ledger still knows by name."""
    mine = {b.name or f"{b.first}": b for b in created}
    earlier = {b.name or f"{b.first}": b for s in sequences if (b := ledger.blob_of(s)) is not None}
    segments = [Segment(b.name, b.first, b.last, created=True) for b in mine.values()]
    segments += [Segment(b.name, b.first, b.last, created=False) for k, b in earlier.items() if k not in mine]
    return sorted(segments, key=lambda s: s.first)


def _JSONL() -> Any:  # noqa: N802 - reads as the content type it builds
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/x-ndjson")
