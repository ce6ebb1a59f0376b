"""The rows of one table partition that one writer keeps, changed by pure merges and
written in conditional entity-group transactions.

An Event Hubs partition's owner is the only steady writer of the rows it keeps (a
lease moves between instances, so two may overlap for a while). It loads the whole
table partition once (a query of 1 000 rows a page) and then writes a batch's rows
in transactions of up to 100, each row on its ETag (created when the cache has it
missing): 100 devices cost one request, where one write each cost 100. A transaction
that finds a row changed (412) or already there (409) is refused whole (Azure applies
all of it or nothing); the cache is then stale, so it is loaded again and the merges
decided again, so correctness never rests on the cache.

Azure Tables: at most 100 operations and 4 MiB in a transaction, one operation per
row; a row takes at most 1 MiB.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.platform.rows import Merge, backoff, contended, properties
from shared.platform.storage import DataStore

MAX_OPERATIONS = 100
# 4 MiB less room for the multipart framing of 100 operations (headers of about 600
# bytes each); a row's size is counted as it travels (binary properties in base64).
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024 - 100 * 1024
# A cache of more than this many bytes is dropped and the partition read row by row
# (a partition of 3 000 devices of 2 KB each takes 6 MB).
MAX_CACHE_BYTES = 64 * 1024 * 1024
_CONFLICTS = (409, 412)

@dataclass
class _Cache:
    rows: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # row key -> (properties, ETag)
    complete: bool = False  # holds every row of the partition: a missing row is absent
    size: int = 0


@dataclass
class PartitionMemory:
    """The partitions whose rows this process keeps, by (table, partition)."""

    partitions: dict[tuple[str, str], _Cache] = field(default_factory=dict)


# The rows that are new to the partition, told before they are created.
OnNew = Callable[[list[str]], Awaitable[None]]


async def merge_rows(store: DataStore, table_name: str, partition_key: str, merges: Mapping[str, Merge], *,
                     on_new: OnNew | None = None) -> int:
    """Write ``merges[row](current properties or None)`` to each row of the partition
    that it changes (None: unchanged), in transactions; ``on_new`` is awaited with
    the rows about to be created first. Returns how many rows were written."""
    if not merges:
        return 0
    table = await store.table(table_name)
    caches, key = store.cache(PartitionMemory).partitions, (table_name, partition_key)
    pending, written = dict(merges), 0
    for attempt in contended(f"rows of partition {partition_key!r} of table {table_name}"):
        cache = caches.get(key)
        if cache is None:
            cache = caches[key] = await _load(table, partition_key)
        if not cache.complete:
            await _read(table, partition_key, cache, [r for r in pending if r not in cache.rows])
        operations = _operations(partition_key, cache, pending)
        if not operations:
            return _trimmed(caches, key, written)
        new = [row for row, (_, etag) in operations.items() if etag is None]
        if new and on_new is not None:
            await on_new(new)
        chunks = _chunks(operations)
        results = await asyncio.gather(*(_submit(table, cache, chunk) for chunk in chunks), return_exceptions=True)
        conflict = False
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, BaseException):
                if getattr(result, "status_code", None) not in _CONFLICTS:
                    raise result
                conflict = True
                continue
            written += len(chunk)
            for row in chunk:
                del pending[row]
        if not conflict:
            return _trimmed(caches, key, written)
        caches.pop(key, None)  # someone else wrote: load the partition again and decide again
        await backoff(attempt)
    raise AssertionError("contended() raises when the attempts run out")


def _operations(partition_key: str, cache: _Cache, pending: Mapping[str, Merge]
                ) -> dict[str, tuple[dict[str, Any], str | None]]:
    """Per row the merge changes, its new properties and the ETag it is written on."""
    operations: dict[str, tuple[dict[str, Any], str | None]] = {}
    for row, merge in pending.items():
        current = cache.rows.get(row)
        new = merge(dict(current[0]) if current is not None else None)
        if new is not None:
            operations[row] = ({"PartitionKey": partition_key, "RowKey": row, **new},
                               current[1] if current is not None else None)
    return operations


def _chunks(operations: Mapping[str, tuple[dict[str, Any], str | None]]
            ) -> list[dict[str, tuple[dict[str, Any], str | None]]]:
    chunks: list[dict[str, tuple[dict[str, Any], str | None]]] = [{}]
    size = 0
    for row, operation in operations.items():
        weight = _wire_bytes(operation[0])
        if len(chunks[-1]) == MAX_OPERATIONS or (chunks[-1] and size + weight > MAX_TRANSACTION_BYTES):
            chunks.append({})
            size = 0
        chunks[-1][row] = operation
        size += weight
    return [c for c in chunks if c]


async def _submit(table: Any, cache: _Cache, chunk: Mapping[str, tuple[dict[str, Any], str | None]]) -> None:
    from shared.platform.table_batch import submit

    etags = await submit(table, list(chunk.values()))
    for (row, (entity, _)), etag in zip(chunk.items(), etags, strict=True):
        _keep(cache, row, properties(entity), etag)


async def _load(table: Any, partition_key: str) -> _Cache:
    """Every row of the partition, or an incomplete cache when they take too much memory."""
    cache = _Cache(complete=True)
    async for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": partition_key}):
        _keep(cache, entity["RowKey"], properties(entity), entity.metadata["etag"])
        if cache.size > MAX_CACHE_BYTES:
            return _Cache()
    return cache


async def _read(table: Any, partition_key: str, cache: _Cache, rows: list[str]) -> None:
    """Point reads of ``rows`` into an incomplete cache (a missing row stays missing)."""
    from azure.core.exceptions import ResourceNotFoundError

    async def read(row: str) -> None:
        try:
            entity = await table.get_entity(partition_key, row)
        except ResourceNotFoundError:
            return
        _keep(cache, row, properties(entity), entity.metadata["etag"])

    await asyncio.gather(*(read(row) for row in rows))


def _trimmed(caches: dict[tuple[str, str], _Cache], key: tuple[str, str], written: int) -> int:
    """``written``, once a cache over MAX_CACHE_BYTES has been let go (the next batch
    reads its rows one by one)."""
    cache = caches.get(key)
    if cache is not None and cache.size > MAX_CACHE_BYTES:
        caches[key] = _Cache()
    return written


def _keep(cache: _Cache, row: str, properties: dict[str, Any], etag: str) -> None:
    old = cache.rows.get(row)
    cache.size += _wire_bytes(properties) - (_wire_bytes(old[0]) if old is not None else 0)
    cache.rows[row] = (properties, etag)


def _wire_bytes(properties: Mapping[str, Any]) -> int:
    """About what a row's properties take on the wire: binary in base64, text as sent."""
    size = 256
    for name, value in properties.items():
        size += len(name) + 64
        if isinstance(value, bytes):
            size += len(value) * 4 // 3 + 4
        elif isinstance(value, str):
            size += len(value.encode("utf-8", "surrogatepass"))
        else:
            size += 32
    return size
