"""The archive: every accepted message in JSON Lines blobs, exactly once per Event
Hubs (hub, partition, sequence number), whatever batches the host delivers.

The blobs of one partition form a chain. A blob is named by the first sequence
number it covers and records the last one in its metadata; it is written only if
no blob of that name exists (``If-None-Match: *``) and never changed. A batch
starts at the first sequence number not yet archived, so two deliveries of the
same events (a retry, a redelivery with other boundaries, two instances during a
lease handover) aim at the same name: one creates the blob, the other finds it,
reads how far it reaches, and goes on after it. No sequence number can be in two
blobs. A range whose messages were all dead-lettered still gets its (empty) blob,
so that the chain has no gap another writer could fill differently.

The highest sequence number archived per (hub, partition) is kept in table
``appmeta`` (and in memory) only to know where the chain ends without walking it;
it is advanced after the blob exists, so a crash in between costs one extra look
at the blob on the next delivery.

Blob: container ``telemetry`` or ``inference``,
``{yyyy}/{MM}/{dd}/{HH}/{hub}-{partition}-{first sequence, 20 digits}.jsonl`` (the
hour of the first event's enqueued time), metadata ``firstsequence``,
``lastsequence``, ``messages``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shared.platform.rows import merge_row
from shared.platform.storage import DataStore
from shared.platform.storage_names import APP_META_TABLE
from shared.streams.batch import Event
from shared.streams.decode import Accepted
from shared.streams.lines import archive_line


@dataclass(frozen=True, slots=True)
class Segment:
    """One blob of the chain: the sequence numbers it covers, and whether we wrote it."""

    name: str
    first: int
    last: int
    created: bool


def blob_name(event: Event) -> str:
    origin = event.origin
    return (f"{origin.enqueued_time:%Y/%m/%d/%H}/{origin.hub}-{origin.partition}-"
            f"{origin.sequence_number:020d}.jsonl")


def archive_lines(events: Sequence[Event]) -> bytes:
    """The JSON Lines of the accepted messages of ``events``, each with its origin."""
    return b"".join(archive_line(r, e.origin) + b"\n" for e in events for r in e.results if isinstance(r, Accepted))


class Archive:
    def __init__(self, store: DataStore, stream: str, container: str) -> None:
        self._store, self._stream, self._container = store, stream, container

    async def append(self, events: Sequence[Event]) -> list[Segment]:
        """Archive what of ``events`` (one partition, in sequence order) is not yet
        archived; returns the chain's blobs that cover them, written now or before."""
        from azure.core.exceptions import ResourceExistsError

        if not events:
            return []
        hub, partition = events[0].origin.hub, events[0].origin.partition
        done = await self.watermark(hub, partition)
        pending = [e for e in events if e.origin.sequence_number > done]
        container = await self._store.container(self._container)
        segments: list[Segment] = []
        while pending:
            first, last = pending[0].origin.sequence_number, pending[-1].origin.sequence_number
            name = blob_name(pending[0])
            body = archive_lines(pending)
            try:
                await container.upload_blob(
                    name, body, overwrite=False,
                    metadata={"firstsequence": str(first), "lastsequence": str(last),
                              "messages": str(body.count(b"\n"))},
                    content_settings=_JSONL())
                segments.append(Segment(name, first, last, created=True))
            except ResourceExistsError:
                # Written by an earlier delivery: it reaches as far as it says.
                properties = await container.get_blob_client(name).get_blob_properties()
                last = int(properties.metadata["lastsequence"])
                segments.append(Segment(name, first, last, created=False))
            pending = [e for e in pending if e.origin.sequence_number > last]
        return segments

    async def read(self, segment: Segment) -> list[dict[str, Any]]:
        """The lines of a blob written before (to redo what depends on it)."""
        container = await self._store.container(self._container)
        data = await (await container.download_blob(segment.name)).readall()
        return [orjson.loads(line) for line in data.splitlines() if line]

    async def advance(self, hub: str, partition: str, last: int) -> None:
        """Record that the chain reaches ``last`` (never moves back)."""
        key = ("archive", self._stream, hub, partition)
        if self._store.memo.get(key, -1) >= last:
            return

        def forward(stored: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if stored is not None and int(stored["lastSequence"]) >= last else {"lastSequence": str(last)}

        await merge_row(self._store, APP_META_TABLE, f"archive|{self._stream}", f"{hub}|{partition}", forward)
        self._store.memo[key] = last

    async def watermark(self, hub: str, partition: str) -> int:
        """The last sequence number the chain is known to reach (-1: none)."""
        key = ("archive", self._stream, hub, partition)
        if key not in self._store.memo:
            from azure.core.exceptions import ResourceNotFoundError

            table = await self._store.table(APP_META_TABLE)
            try:
                entity = await table.get_entity(f"archive|{self._stream}", f"{hub}|{partition}")
                self._store.memo[key] = int(entity["lastSequence"])
            except ResourceNotFoundError:
                self._store.memo[key] = -1
        return int(self._store.memo[key])


def _JSONL() -> Any:  # noqa: N802 - reads as the content type it builds
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/x-ndjson")
