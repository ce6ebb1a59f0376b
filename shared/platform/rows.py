"""A Table row changed by a pure merge, conditionally on its ETag.

Concurrent writers of one row never lose each other's change: each reads, merges
and writes only if the row is unchanged, else reads again. The row and its ETag
are remembered in the store's memo, so a process that is the row's only writer
(an Event Hubs partition's owner writes its devices' rows) skips the read; when
the memory is stale the write fails on the ETag and the row is read again, so
correctness never depends on it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from shared.platform.storage import DataStore

Merge = Callable[[dict[str, Any] | None], dict[str, Any] | None]
MAX_ATTEMPTS = 8
# Rows remembered per process before the memory starts afresh (a cache, so a crude bound will do).
MEMO_LIMIT = 20_000


class RowContention(RuntimeError):
    """A row kept changing under us; the invocation fails and is retried."""


async def merge_row(store: DataStore, table_name: str, partition_key: str, row_key: str, merge: Merge) -> bool:
    """Write ``merge(current properties or None)`` to the row unless it returns None
    (nothing to change). Returns whether it wrote."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
    from azure.data.tables import UpdateMode

    table = await store.table(table_name)
    key = ("row", table_name, partition_key, row_key)
    for attempt in range(MAX_ATTEMPTS):
        remembered = store.memo.get(key)
        if remembered is None:
            try:
                entity = await table.get_entity(partition_key, row_key)
                remembered = ({k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")},
                              entity.metadata["etag"])
            except ResourceNotFoundError:
                remembered = (None, None)
        current, etag = remembered
        new = merge(dict(current) if current is not None else None)
        if new is None:
            store.memo[key] = remembered
            return False
        row = {"PartitionKey": partition_key, "RowKey": row_key, **new}
        try:
            if etag is None:
                written = await table.create_entity(row)
            else:
                written = await table.update_entity(row, mode=UpdateMode.REPLACE, etag=etag,
                                                    match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            store.memo.pop(key, None)  # someone else wrote it: read it again
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter
            continue
        if len(store.memo) >= MEMO_LIMIT:
            store.memo.clear()
        store.memo[key] = (new, written["etag"])
        return True
    raise RowContention(f"row {partition_key!r}/{row_key!r} of table {table_name} changed {MAX_ATTEMPTS} times")
