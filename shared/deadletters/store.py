"""Reading dead letters, through their index (table ``deadletters``) or by id, and
marking one redriven. The layout is :mod:`shared.platform.deadletter`'s.

A listing of one stream is one range query of its partition, newest first: ``since``
bounds the ``RowKey`` range, ``reason`` (a prefix) and ``deviceId`` are filters the
table service applies in that range. Without a stream, the four partitions are read
alike (at most ``limit`` + 1 rows each, in parallel) and merged: their row keys
sort alike. A page ends after ``limit`` items and its continuation token carries the
last row key (signed and bound to the filters, :mod:`shared.platform.paging`), so the
next page starts after it in every partition, whatever was written meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from shared.deadletters.models import DeadLetter, DeadLetterSummary
from shared.platform.deadletter import (
    STREAMS,
    blob_name,
    body_of,
    device_of,
    index_row,
    json_content,
    received_key,
)
from shared.platform.errors import InvalidInput
from shared.platform.paging import decode_token, encode_token, token_scope
from shared.platform.storage import DataStore
from shared.platform.storage_names import DEADLETTER_CONTAINER, DEADLETTERS_TABLE
from shared.platform.timestamps import format_timestamp

COLUMNS = ["PartitionKey", "RowKey", "deadLetterId", "reason", "receivedAt", "deviceId", "position", "redrivenAt"]
# Blob metadata of a redrive in progress: which run holds the dead letter, and since when.
CLAIM, CLAIMED_AT = "redriveclaim", "redriveclaimedat"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters: all by default. ``reason`` is a prefix; ``since`` and
    ``until`` bound ``receivedAt`` (both included)."""

    stream: str | None = None
    reason: str | None = None
    device_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def streams(self) -> tuple[str, ...]:
        return (self.stream,) if self.stream else STREAMS

    def scope(self) -> str:
        """What a continuation token of this selection is bound to."""
        stamp = {key: format_timestamp(value) if value else None
                 for key, value in (("since", self.since), ("until", self.until))}
        return token_scope("list_dead_letters", stream=self.stream, reason=self.reason, deviceId=self.device_id,
                           **stamp)


def partition_query(selection: Selection, stream: str, after: str | None) -> tuple[str, dict[str, Any]]:
    """The filter of one stream's range: newest first, after row key ``after``."""
    conditions, parameters = ["PartitionKey eq @pk"], {"pk": stream}
    if after is not None:
        conditions.append("RowKey gt @after")
        parameters["after"] = after
    if selection.until is not None:
        conditions.append("RowKey ge @newest")
        parameters["newest"] = received_key(selection.until)
    if selection.since is not None:
        conditions.append("RowKey lt @oldest")  # a row key's first 15 digits are at most since's
        parameters["oldest"] = f"{int(received_key(selection.since)) + 1:015d}"
    if selection.reason:
        conditions.append("reason ge @reason")
        parameters["reason"] = selection.reason
        last = selection.reason[-1]
        if ord(last) < 0xD7FF:  # the table compares UTF-16 code units: bound the range only below surrogates
            conditions.append("reason lt @beyond")
            parameters["beyond"] = selection.reason[:-1] + chr(ord(last) + 1)
    if selection.device_id is not None:
        conditions.append("deviceId eq @device")
        parameters["device"] = selection.device_id
    return " and ".join(conditions), parameters


async def rows(store: DataStore, selection: Selection, *, after: str | None,
               limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` index rows after row key ``after``, newest first, and whether more follow."""
    table = await store.table(DEADLETTERS_TABLE)

    async def one(stream: str) -> list[dict[str, Any]]:
        query, parameters = partition_query(selection, stream, after)
        found: list[dict[str, Any]] = []
        async for entity in table.query_entities(query, parameters=parameters, select=COLUMNS,
                                                 results_per_page=min(limit + 1, 1000)):
            if selection.reason and not str(entity.get("reason", "")).startswith(selection.reason):
                continue
            found.append(dict(entity))
            if len(found) > limit:
                break
        return found

    merged = sorted((row for part in await asyncio.gather(*map(one, selection.streams)) for row in part),
                    key=lambda row: str(row["RowKey"]))
    return merged[:limit], len(merged) > limit


def summary(row: dict[str, Any]) -> DeadLetterSummary:
    return DeadLetterSummary(dead_letter_id=row["deadLetterId"], stream=row["PartitionKey"], reason=row["reason"],
                             device_id=row.get("deviceId"), received_at=row["receivedAt"],
                             redriven_at=row.get("redrivenAt"))


async def list_page(store: DataStore, selection: Selection, *, limit: int,
                    continuation_token: str | None) -> tuple[list[DeadLetterSummary], str | None]:
    """One page of the selection, newest first, and the next page's token (None after the last)."""
    scope = selection.scope()
    keys = await decode_token(store, scope, continuation_token)
    page, more = await rows(store, selection, after=(keys or {}).get("after"), limit=limit)
    token = await encode_token(store, scope, {"after": page[-1]["RowKey"]}) if more else None
    return [summary(row) for row in page], token


async def every_row(store: DataStore, selection: Selection, *, page_size: int = 1000,
                    ) -> AsyncIterator[dict[str, Any]]:
    """Every index row of the selection, newest first."""
    after = None
    while True:
        page, more = await rows(store, selection, after=after, limit=page_size)
        for row in page:
            yield row
        if not more:
            return
        after = page[-1]["RowKey"]


# --------------------------------------------------------------------------- one dead letter


@dataclass(frozen=True, slots=True)
class Stored:
    """A dead letter's blob as read: its document, ETag and metadata."""

    stream: str
    dead_letter_id: str
    document: dict[str, Any]
    etag: str
    metadata: dict[str, str]


async def read(store: DataStore, stream: str, dead_letter_id: str) -> Stored | None:
    """The dead letter (one point read of its blob); None when there is none.
    InvalidInput for a stream or id this API never issues."""
    from azure.core.exceptions import ResourceNotFoundError

    blob = (await store.container(DEADLETTER_CONTAINER)).get_blob_client(blob_name(stream, dead_letter_id))
    try:
        download = await blob.download_blob()
        data = await download.readall()
    except ResourceNotFoundError:
        return None
    return Stored(stream, dead_letter_id, orjson.loads(data), str(download.properties.etag),
                  dict(download.properties.metadata or {}))


def dead_letter(stored: Stored) -> DeadLetter:
    """The API's form of a stored dead letter."""
    return DeadLetter.model_validate({**stored.document, "deadLetterId": stored.dead_letter_id})


async def claim(store: DataStore, stored: Stored, run: str, now: datetime) -> Stored | None:
    """Take ``stored`` for redrive run ``run``: metadata written only if the blob is
    as read (its ETag), so of two runs one gets it; None when another got there first."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    blob = (await store.container(DEADLETTER_CONTAINER)).get_blob_client(blob_name(stored.stream,
                                                                                    stored.dead_letter_id))
    metadata = {CLAIM: run, CLAIMED_AT: format_timestamp(now)}
    try:
        answer = await blob.set_blob_metadata(metadata, etag=stored.etag, match_condition=MatchConditions.IfNotModified)
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
    return Stored(stored.stream, stored.dead_letter_id, stored.document, str(answer["etag"]), metadata)


async def release(store: DataStore, stored: Stored) -> None:
    """Give a claimed dead letter back (unless it changed since), so that the next run
    need not wait for the claim to go stale."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    blob = (await store.container(DEADLETTER_CONTAINER)).get_blob_client(blob_name(stored.stream,
                                                                                    stored.dead_letter_id))
    with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
        await blob.set_blob_metadata({}, etag=stored.etag, match_condition=MatchConditions.IfNotModified)


async def mark_redriven(store: DataStore, stored: Stored, now: datetime) -> bool:
    """Write ``redrivenAt`` into the blob, only if it is as claimed (a pipeline that
    rejected the message again has rewritten it), then into its index row. Returns
    whether the blob was marked."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    blob = (await store.container(DEADLETTER_CONTAINER)).get_blob_client(blob_name(stored.stream,
                                                                                    stored.dead_letter_id))
    document = {**stored.document, "redrivenAt": format_timestamp(now)}
    try:
        await blob.upload_blob(orjson.dumps(document), overwrite=True, etag=stored.etag,
                               match_condition=MatchConditions.IfNotModified, content_settings=json_content())
    except (ResourceModifiedError, ResourceNotFoundError):
        return False
    await mirror(store, Stored(stored.stream, stored.dead_letter_id, document, "", {}))
    return True


async def mirror(store: DataStore, stored: Stored) -> None:
    """Make the index row say what the blob says (an upsert: merge)."""
    from azure.data.tables import UpdateMode

    table = await store.table(DEADLETTERS_TABLE)
    row = index_row(stored.stream, stored.dead_letter_id, stored.document,
                    device_of(stored.stream, body_of(stored.document)))
    await table.upsert_entity(row, mode=UpdateMode.MERGE)


async def reindex(store: DataStore, stream: str) -> int:
    """Write the index row of every dead letter of ``stream`` (one listing of the
    container per 5 000 blobs, one read and one upsert per dead letter), for those
    stored before the index existed; returns how many. Safe to run again."""
    container = await store.container(DEADLETTER_CONTAINER)
    count = 0
    async for blob in container.list_blobs(name_starts_with=f"{stream}/"):
        parts = blob.name.removesuffix(".json").split("/")
        if len(parts) != 5 or not blob.name.endswith(".json"):
            continue
        try:
            stored = await read(store, stream, f"{parts[1]}{parts[2]}{parts[3]}-{parts[4]}")
        except InvalidInput:  # not a name the app writes
            continue
        if stored is not None:
            await mirror(store, stored)
            count += 1
    return count
